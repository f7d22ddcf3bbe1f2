"""POST /demo/web-call — lets the demo page at ``/`` call the demo agent (development mode only).

It needs no key, so it is mounted only when ``CALLGATE_ENV=development`` and is limited per client
address. Real pages use a publishable key with ``POST /v1/web-calls/token``.
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Request, status
from pydantic import Field

from callgate.api.deps import RuntimeDep
from callgate.api.issue import BaseURLs, issue_web_call
from callgate.api.schemas.calls import Mode, WebCallPublic
from callgate.api.schemas.common import Strict
from callgate.auth.keys import KeyType
from callgate.domain import calls
from callgate.domain.bootstrap import demo_agent_id
from callgate.domain.keys import DEFAULT_TEAM, Principal, find_team_id
from callgate.errors import NotFound

router = APIRouter(prefix="/demo", tags=["demo"], include_in_schema=False)


class DemoCall(Strict):
    mode: Mode = Mode.AUDIO
    transport: Literal["websocket", "webrtc"] = "websocket"
    variables: dict[str, str] = Field(default_factory=dict, max_length=20)


@router.post("/web-call", status_code=status.HTTP_201_CREATED)
async def demo_web_call(request: Request, runtime: RuntimeDep, body: DemoCall | None = None) -> WebCallPublic:
    body = body or DemoCall()
    client = request.client.host if request.client else "unknown"
    await runtime.limiter.hit("30/minute", "demo", client)
    async with runtime.db.read() as s:
        team_id = await find_team_id(s, name=DEFAULT_TEAM)
        agent_id = await demo_agent_id(s, team_id=team_id) if team_id else None
    if team_id is None or agent_id is None:
        raise NotFound("there is no demo agent (was the database seeded by `callgate serve`?)")
    principal = Principal(
        key_id="demo",
        team_id=team_id,
        type=KeyType.PUBLISHABLE,
        allowed_origins=(),
        agent_ids=(agent_id,),
        rate_limit="30/minute",
        token_ttl_s=None,
    )
    spec = calls.NewCall(
        agent_id=agent_id,
        transport=body.transport,
        mode=body.mode.value,
        variables=body.variables,
        metadata={"demo": True},
    )
    _, public = await issue_web_call(runtime, principal, urls=BaseURLs.of(runtime, request), spec=spec)
    return public
