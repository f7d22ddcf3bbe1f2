"""/v1/web-calls (create) and /v1/calls (read, list, end)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Query, Request, status
from pydantic import AnyHttpUrl

from callgate.api.deps import BrowserPrincipal, RuntimeDep, SecretPrincipal
from callgate.api.issue import BaseURLs, issue_web_call
from callgate.api.schemas.calls import (
    CallEnd,
    CallPublic,
    CallSummary,
    LatencySummary,
    PhoneSidePublic,
    TurnPublic,
    WebCallCreate,
    WebCallPublic,
    WebCallTokenCreate,
)
from callgate.api.schemas.common import Cursor, ListPage, Time
from callgate.auth.keys import KeyType
from callgate.domain import calls, telephony
from callgate.domain.lifecycle import CallStatus, EndReason
from callgate.domain.twilio_calls import TRANSPORT as TWILIO
from callgate.errors import ValidationFailed
from callgate.net_guard import check_url
from callgate.runtime import Runtime
from callgate.webhooks.targets import CallWebhook

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from callgate.store.models import Call, TranscriptTurn

router = APIRouter(tags=["calls"])
Limit = Annotated[int, Query(ge=1, le=200)]

STAGES = ("endpointing_ms", "stt_ms", "agent_first_token_ms", "tts_first_audio_ms", "total_ms")


def summary(call: Call) -> CallSummary:
    return CallSummary(
        id=call.id,
        agent_id=call.agent_id,
        contact_id=call.contact_id,
        kind=call.kind,
        transport=call.transport,
        mode=call.mode,
        status=call.status,
        end_reason=call.end_reason,
        variables=call.variables,
        metadata=call.call_metadata,
        data=call.data,
        created_at=call.created_at,
        join_deadline=call.join_deadline,
        connected_at=call.connected_at,
        started_at=call.started_at,
        ended_at=call.ended_at,
        duration_s=(call.ended_at - call.started_at).total_seconds()
        if call.ended_at and call.started_at
        else None,
    )


async def call_view(session: AsyncSession, call: Call, *, base_url: str) -> CallPublic:
    """The full call as ``GET /v1/calls/{id}`` returns it (also the webhook payload)."""
    turns = await calls.list_turns(session, call_id=call.id)
    phone = None
    if call.kind == "phone":
        phone = (await telephony.phone_sides(session, call_ids=[call.id])).get(call.id)
    return _view(call, turns, phone, base_url=base_url)


def new_call_view(call: Call, *, base_url: str) -> CallPublic | None:
    """:func:`call_view` of a call just created, without reading it back: no turns yet (None for phone
    calls, whose sides are rows of their own)."""
    if call.kind == "phone":
        return None
    return _view(call, [], None, base_url=base_url)


def _view(call: Call, turns: list[TranscriptTurn], phone: Any, *, base_url: str) -> CallPublic:
    agent_turns = [t for t in turns if t.role == "agent" and t.total_ms is not None]
    latency = LatencySummary(
        turns=len(agent_turns),
        p50_ms=calls.percentile([t.total_ms for t in agent_turns if t.total_ms is not None], 50),
        p95_ms=calls.percentile([t.total_ms for t in agent_turns if t.total_ms is not None], 95),
        stages_p50_ms={
            stage: calls.percentile([v for t in agent_turns if (v := getattr(t, stage)) is not None], 50)
            for stage in STAGES
        },
    )
    return CallPublic(
        **summary(call).model_dump(),
        phone=PhoneSidePublic.model_validate(phone) if phone is not None else None,
        transcript=[TurnPublic.model_validate(t) for t in turns],
        latency=latency,
        recording_url=f"{base_url}/v1/calls/{call.id}/recording" if call.recording_path else None,
        analysis=call.analysis,
    )


async def call_webhook(runtime: Runtime, url: AnyHttpUrl | None) -> dict[str, Any] | None:
    """The stored per-call destination for ``webhook_url`` (checked by the outbound guard)."""
    if url is None:
        return None
    await check_url(str(url), runtime.webhooks.policy, field="body.webhook_url")
    return CallWebhook(url=str(url)).stored()


@router.post(
    "/v1/web-calls", status_code=status.HTTP_201_CREATED, operation_id="createWebCall", tags=["web-calls"]
)
async def create_web_call(
    body: WebCallCreate, request: Request, principal: SecretPrincipal, runtime: RuntimeDep
) -> WebCallPublic:
    spec = calls.NewCall(
        agent_id=body.agent_id,
        transport=body.transport.value,
        mode=body.mode.value,
        variables=body.variables,
        metadata=body.metadata,
        contact_id=body.contact_id,
        webhook=await call_webhook(runtime, body.webhook_url),
    )
    _, public = await issue_web_call(runtime, principal, urls=BaseURLs.of(runtime, request), spec=spec)
    return public


@router.post(
    "/v1/web-calls/token",
    status_code=status.HTTP_201_CREATED,
    operation_id="createWebCallToken",
    tags=["web-calls"],
)
async def create_web_call_token(
    body: WebCallTokenCreate, request: Request, principal: BrowserPrincipal, runtime: RuntimeDep
) -> WebCallPublic:
    """For browsers: a publishable key (checked against `Origin`) or a shared key."""
    agent_id = body.agent_id
    if agent_id is None:
        if principal.type is not KeyType.SHARED:
            raise ValidationFailed(
                "agent_id is required",
                errors=[{"field": "body.agent_id", "message": "Field required", "type": "missing"}],
            )
        agent_id = principal.agent_ids[0]
    spec = calls.NewCall(
        agent_id=agent_id,
        transport=body.transport.value,
        mode=body.mode.value,
        variables=body.variables,
        metadata=body.metadata,
    )
    _, public = await issue_web_call(runtime, principal, urls=BaseURLs.of(runtime, request), spec=spec)
    return public


@router.get("/v1/calls", operation_id="listCalls")
async def list_calls(
    principal: SecretPrincipal,
    runtime: RuntimeDep,
    limit: Limit = 50,
    cursor: Cursor = None,
    agent_id: str | None = None,
    status: CallStatus | None = None,
    created_after: Time | None = None,
    created_before: Time | None = None,
) -> ListPage[CallSummary]:
    for name, value in (("created_after", created_after), ("created_before", created_before)):
        if value is not None and value.tzinfo is None:
            raise ValidationFailed(
                f"{name} needs a timezone",
                errors=[
                    {"field": f"query.{name}", "message": "give a timezone, e.g. Z", "type": "value_error"}
                ],
            )
    async with runtime.db.read() as s:
        page = await calls.list_calls(
            s,
            team_id=principal.team_id,
            limit=limit,
            cursor=cursor,
            agent_id=agent_id,
            status=status.value if status else None,
            created_after=created_after,
            created_before=created_before,
        )
    return ListPage(data=[summary(c) for c in page.items], next_cursor=page.next_cursor)


@router.get("/v1/calls/{call_id}", operation_id="getCall")
async def get_call(
    call_id: str, request: Request, principal: SecretPrincipal, runtime: RuntimeDep
) -> CallPublic:
    async with runtime.db.read() as s:
        call = await calls.get_call(s, team_id=principal.team_id, call_id=call_id)
        return await call_view(s, call, base_url=BaseURLs.of(runtime, request).http)


@router.post("/v1/calls/{call_id}/end", operation_id="endCall")
async def end_call(
    call_id: str, principal: SecretPrincipal, runtime: RuntimeDep, body: CallEnd | None = None
) -> CallSummary:
    """End a call from your backend. A live session on any node hangs up."""
    now, note = runtime.clock.now(), body.reason if body else None
    call = await runtime.db.write(
        lambda s: calls.end_call(
            s, team_id=principal.team_id, call_id=call_id, reason=EndReason.API_REQUEST, now=now, note=note
        )
    )
    runtime.metrics.calls_ended.labels(reason=EndReason.API_REQUEST.value).inc()
    await runtime.control.publish_end(call.id, EndReason.API_REQUEST)
    if call.transport == TWILIO:  # still ringing: cancel it at Twilio (a joined call's session hangs up)
        await runtime.twilio.hang_up_unjoined(call.id)
    return summary(call)
