"""The Vocode dialect, mounted at ``/dialects/vocode``: phone calls as Vocode's API shows them.

``POST /v1/calls/create`` (the seed), plus what Vocode's client library uses for the same resource:
``GET /v1/calls?id=``, ``GET /v1/calls/list``, ``POST /v1/calls/end?id=``, ``GET /v1/calls/recording?id=``.
Keys are callgate secret keys, sent as ``Authorization: Bearer``. Errors are FastAPI's ``{"detail": …}``.
A created call is placed through the ``from_number``'s carrier (SIP trunk or Twilio); from a number
without a carrier it is kept and fails at once with a clear ``error_message`` (see
``callgate.domain.telephony``). An agent's ``webhook`` receives Vocode's events
(:mod:`callgate.api.dialects.vocode.webhooks`).
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import ValidationError

from callgate.api import problems
from callgate.api.deps import RuntimeDep, SecretPrincipal
from callgate.api.dialects.errors import (
    VALIDATION_DETAIL,
    error_headers,
    public_message,
    validation_detail,
)
from callgate.api.dialects.vocode.schemas import AgentParams, CreateCallRequest, parse_agent
from callgate.api.dialects.vocode.views import call_object, callgate_id
from callgate.api.dialects.vocode.webhooks import call_webhook
from callgate.api.issue import BaseURLs
from callgate.api.phone_calls import dial_out
from callgate.api.recordings import RangeHeader, recording_response
from callgate.api.schemas.agents import AgentCreate
from callgate.domain import agents, calls, telephony, vocode_agents
from callgate.domain.lifecycle import EndReason
from callgate.domain.recording_store import ByteRange
from callgate.errors import CallgateError, NoRecording, NotFound, ValidationFailed
from callgate.net_guard import check_url
from callgate.runtime import Runtime

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from callgate.store.models import Call

PREFIX = "/dialects/vocode"
router = APIRouter(prefix=PREFIX, tags=["dialect: vocode"])
RING_TIMEOUT_S = 30  # Vocode's create-call request has no ring timeout: the phone-call default
CallId = Annotated[uuid.UUID, Query(alias="id")]
MAX_PAGE = 1_000_000
"""Pages past this are refused (422): ``(page - 1) * size`` must stay a small integer for the database."""


async def _view(runtime: Runtime, *, team_id: str, call_id: str) -> dict[str, Any]:
    async with runtime.db.read() as s:
        try:
            call, phone = await telephony.get_phone_call(s, team_id=team_id, call_id=call_id)
        except NotFound:
            raise NotFound("Call not found") from None
        agent = await agents.agent_of_call(s, call=call)
        objects = await vocode_agents.vocode_objects(s, agent_ids=[call.agent_id])
        turns = await calls.list_turns(s, call_id=call.id)
    return call_object(call, phone, agent=agent, objects=objects.get(call.agent_id), turns=turns)


def _inline_agent(params: AgentParams) -> tuple[dict[str, Any], vocode_agents.VocodeObjects]:
    """The callgate agent fields and the Vocode objects of an inline agent (ids → 404: callgate keeps
    no separate voice, action or webhook objects)."""
    if isinstance(params.voice, str):
        raise NotFound(f"Voice {params.voice} not found: give the voice inline")
    if isinstance(params.webhook, str):
        raise NotFound(f"Webhook {params.webhook} not found: give the webhook inline")
    for action in params.actions:
        if isinstance(action, str):
            raise NotFound(f"Action {action} not found: give the action inline")
    try:
        created = AgentCreate(
            name=params.name or "Vocode agent",
            prompt=params.prompt_text,
            initial_message=params.initial_message,
            voice=params.voice.name[:200],
        )
        # As POST /v1/agents stores it: turn detection without its unset (None) tunings.
        fields = created.model_dump(mode="json") | {"turn_detection": created.turn_detection.stored()}
    except ValidationError as exc:
        raise ValidationFailed(
            "invalid fields: body.agent",
            errors=[
                {"loc": ["body", "agent", *e["loc"]], "msg": e["msg"], "type": e["type"]}
                for e in exc.errors()
            ],
        ) from exc
    objects = vocode_agents.VocodeObjects(
        voice=params.voice.as_object(),
        actions=[a.as_object() for a in params.actions if not isinstance(a, str)],
        webhook=params.webhook.as_object() if params.webhook is not None else None,
    )
    return fields, objects


@router.post("/v1/calls/create", operation_id="vocodeCreateCall")
async def create_call(
    body: CreateCallRequest, request: Request, principal: SecretPrincipal, runtime: RuntimeDep
) -> dict[str, Any]:
    agent = parse_agent(body.agent)
    inline = _inline_agent(agent) if isinstance(agent, AgentParams) else None
    agent_id = None if inline else callgate_id("agt", str(agent))
    if inline is None and agent_id is None:
        raise NotFound(f"Agent {agent} not found")
    if inline is not None and inline[1].webhook is not None:
        # As for callgate's own webhook URLs: refused when saved, and checked again at every delivery.
        await check_url(inline[1].webhook["url"], runtime.webhooks.policy, field="body.agent.webhook.url")
    now = runtime.clock.now()
    # The callee answers within the ring timeout; then the call's media joins.
    deadline = now + timedelta(seconds=RING_TIMEOUT_S + runtime.settings.join_deadline_s)

    async def job(s: AsyncSession) -> tuple[Call, telephony.Dial | None]:
        chosen = agent_id
        if inline is not None:
            created, _ = await vocode_agents.create_vocode_agent(
                s, team_id=principal.team_id, fields=inline[0], objects=inline[1], now=now
            )
            chosen = created.id
        assert chosen is not None
        spec = telephony.NewPhoneCall(
            agent_id=chosen,
            from_number=body.from_number,
            to_number=body.to_number,
            variables=body.variables(),
            options=body.options(),
            dialect="vocode",
            webhook=call_webhook(await vocode_agents.vocode_webhook(s, agent_id=chosen)),
        )
        call, _, dial = await telephony.prepare_phone_call(
            s,
            team_id=principal.team_id,
            spec=spec,
            now=now,
            join_deadline=deadline,
            dialable=frozenset(runtime.dialers),
        )
        return call, dial

    try:
        call, dial = await runtime.db.write(job)
    except NotFound:
        raise NotFound(f"Agent {agent} not found") from None
    runtime.metrics.calls_created.labels(transport=call.transport).inc()
    # Placed through the from_number's carrier, or failed telephony_unavailable when it has none.
    dial_out(runtime, call, dial, callback_base=BaseURLs.of(runtime, request).http)
    return await _view(runtime, team_id=principal.team_id, call_id=call.id)


@router.get("/v1/calls", operation_id="vocodeGetCall")
@router.get("/v1/calls/", include_in_schema=False)
async def get_call(id_: CallId, principal: SecretPrincipal, runtime: RuntimeDep) -> dict[str, Any]:
    return await _view(runtime, team_id=principal.team_id, call_id=f"call_{id_.hex}")


@router.get("/v1/calls/list", operation_id="vocodeListCalls")
async def list_calls(
    principal: SecretPrincipal,
    runtime: RuntimeDep,
    page: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 1,
    size: Annotated[int, Query(ge=1, le=100)] = 10,
    sort_column: Annotated[str | None, Query(max_length=64)] = None,
    sort_desc: bool = False,
) -> dict[str, Any]:
    """Calls by creation time (``sort_column`` is accepted; callgate sorts by creation only)."""
    async with runtime.db.read() as s:
        rows, total = await telephony.list_phone_calls(
            s, team_id=principal.team_id, offset=(page - 1) * size, limit=size, newest_first=sort_desc
        )
        turns = await telephony.turns_of(s, call_ids=[call.id for call, _ in rows])
    items = [
        call_object(call, phone, agent=None, objects=None, turns=turns.get(call.id, []))
        for call, phone in rows
    ]
    return {
        "items": items,
        "page": page,
        "size": size,
        "has_more": (page - 1) * size + len(items) < total,
        "total": total,
        "total_is_estimated": False,
    }


@router.post("/v1/calls/end", operation_id="vocodeEndCall")
async def end_call(id_: CallId, principal: SecretPrincipal, runtime: RuntimeDep) -> dict[str, Any]:
    call_id = f"call_{id_.hex}"
    await _view(
        runtime, team_id=principal.team_id, call_id=call_id
    )  # 404 unless one of the team's phone calls
    now = runtime.clock.now()
    await runtime.db.write(
        lambda s: calls.end_call(
            s, team_id=principal.team_id, call_id=call_id, reason=EndReason.API_REQUEST, now=now
        )
    )
    runtime.metrics.calls_ended.labels(reason=EndReason.API_REQUEST.value).inc()
    await runtime.control.publish_end(call_id, EndReason.API_REQUEST)
    return await _view(runtime, team_id=principal.team_id, call_id=call_id)


@router.get("/v1/calls/recording", operation_id="vocodeGetRecording", response_model=None)
async def get_recording(
    id_: CallId, principal: SecretPrincipal, runtime: RuntimeDep, range_: RangeHeader = None
) -> StreamingResponse:
    try:
        recording = await runtime.recordings.open(
            team_id=principal.team_id,
            call_id=f"call_{id_.hex}",
            byte_range=ByteRange.parse(range_),
            phone_only=True,
        )
    except NoRecording:
        raise NotFound("Recording not available") from None
    except NotFound:
        raise NotFound("Call not found") from None
    return recording_response(recording, filename=f"{id_}.wav")


def render(request: Request, error: CallgateError) -> Response:
    """callgate errors in Vocode's (FastAPI's) shape: ``{"detail": str}``; a 422 has
    ``{"detail": [{loc, msg, type}]}``."""
    if (entries := validation_detail(error)) is not None:
        return JSONResponse({"detail": entries}, status_code=422)
    return JSONResponse(
        {"detail": public_message(error)}, status_code=error.status, headers=error_headers(error)
    )


ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["detail"],
    "properties": {"detail": {"anyOf": [{"type": "string"}, VALIDATION_DETAIL]}},
}
problems.register_dialect(PREFIX, render, error_schema=ERROR_SCHEMA)
