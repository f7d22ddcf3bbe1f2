"""The outbox: events and their deliveries, written in the transaction of the change that causes them.

:mod:`callgate.domain.calls` calls :func:`call_created`, :func:`call_transitioned`,
:func:`call_finished` and :func:`turn_recorded` with its own session, so an event exists if and
only if its state change committed: nothing is lost when a node dies after the commit, and nothing is
announced that was rolled back. The dispatcher (:mod:`callgate.webhooks.dispatcher`) sends them later.

A call that ends after it started also gets an ``analysis_job`` here (see :mod:`callgate.domain.analysis`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from callgate.errors import ValidationFailed
from callgate.store import repo
from callgate.store.models import Agent, Call, TranscriptTurn, table
from callgate.store.models_webhooks import AnalysisJob, WebhookDelivery, WebhookEndpoint, WebhookEvent
from callgate.webhooks.events import EventType, envelope, new_id, render_call, turn_data
from callgate.webhooks.targets import EndpointFilter, Target, choose_targets, targets_for, team_endpoints

__all__ = [
    "Replayed",
    "call_finished",
    "call_transitioned",
    "calls_created",
    "enqueue",
    "provider_switched",
    "record",
    "replay",
    "transcript_partial",
    "turn_recorded",
    "wanted",
]

_BY_STATUS = {
    "in_progress": EventType.CALL_STARTED,
    "ended": EventType.CALL_ENDED,
    "failed": EventType.CALL_FAILED,
}
REPLAY_PAGE = 1_000
"""The most events one replay request queues; a wider range continues with the page's cursor."""
# Core statements, built once: the hot path (calls_created) skips the ORM's unit of work.
_INSERT_EVENTS = insert(table(WebhookEvent)).returning(
    table(WebhookEvent).c.seq, sort_by_parameter_order=True
)
_INSERT_DELIVERIES = insert(table(WebhookDelivery))
ANALYSIS_GRACE_S = 30.0


def _delivery(
    event_seq: int, event: WebhookEvent | dict[str, Any], target: Target, now: datetime
) -> dict[str, Any]:
    """The row of one pending delivery of an event (an ORM event, or the row of one being inserted)."""
    fields = (
        event
        if isinstance(event, dict)
        else {"team_id": event.team_id, "type": event.type, "call_id": event.call_id}
    )
    return {
        "id": new_id("delivery"),
        "team_id": fields["team_id"],
        "event_seq": event_seq,
        "event_type": fields["type"],
        "call_id": fields["call_id"],
        "endpoint_id": target.endpoint_id,
        "target": target.kind,
        "destination": target.destination,
        "url": target.url,
        "method": target.method,
        "format": target.format,
        "status": "pending",
        "attempts": 0,
        "next_attempt_at": now,
        "last_status_code": None,
        "last_error": None,
        "created_at": now,
        "updated_at": now,
        "delivered_at": None,
    }


def enqueue(session: AsyncSession, *, event: WebhookEvent, targets: list[Target], now: datetime) -> int:
    """Add one pending delivery of ``event`` per target."""
    for target in targets:
        session.add(WebhookDelivery(**_delivery(event.seq, event, target, now)))
    return len(targets)


async def record(
    session: AsyncSession,
    *,
    call: Call,
    type_: EventType,
    now: datetime,
    data: dict[str, Any] | None = None,
) -> WebhookEvent:
    """Record an event of ``call`` (``data`` defaults to the call's view) and its deliveries."""
    if data is None:
        data = await render_call(session, call)
    payload = envelope(type_, timestamp=now, data=data)
    event = await _add_event(session, call=call, type_=type_, payload=payload, now=now)
    targets = await targets_for(session, team_id=call.team_id, call=call, type_=type_, envelope=payload)
    enqueue(session, event=event, targets=targets, now=now)
    return event


async def _add_event(
    session: AsyncSession, *, call: Call, type_: EventType, payload: dict[str, Any], now: datetime
) -> WebhookEvent:
    event = WebhookEvent(
        id=new_id("event"),
        team_id=call.team_id,
        call_id=call.id,
        agent_id=call.agent_id,
        type=type_.value,
        payload=payload,
        created_at=now,
    )
    session.add(event)
    await session.flush()  # assigns seq, the order of a call's events
    return event


async def calls_created(session: AsyncSession, *, created: list[tuple[Call, str | None]]) -> None:
    """Calls just inserted in this transaction, each with its agent's ``webhook_url``: their
    ``call.created`` events and deliveries, in two or three statements however many calls there are.

    The calls may be transient objects (built for rendering, not added to the session).
    """
    type_ = EventType.CALL_CREATED
    endpoints: dict[str, list[EndpointFilter]] = {}
    events: list[dict[str, Any]] = []
    targets: list[list[Target]] = []
    for call, agent_url in created:
        if call.team_id not in endpoints:
            endpoints[call.team_id] = await team_endpoints(session, team_id=call.team_id)
        payload = envelope(type_, timestamp=call.created_at, data=await render_call(session, call, new=True))
        events.append(
            {
                "id": new_id("event"),
                "team_id": call.team_id,
                "call_id": call.id,
                "agent_id": call.agent_id,
                "type": type_.value,
                "payload": payload,
                "created_at": call.created_at,
            }
        )
        targets.append(
            choose_targets(
                endpoints[call.team_id], call=call, type_=type_, envelope=payload, agent_url=agent_url
            )
        )
    seqs = list((await session.execute(_INSERT_EVENTS, events)).scalars())
    deliveries = [
        _delivery(seq, event, target, event["created_at"])
        for seq, event, event_targets in zip(seqs, events, targets, strict=True)
        for target in event_targets
    ]
    if deliveries:
        await session.execute(_INSERT_DELIVERIES, deliveries)


async def call_transitioned(session: AsyncSession, *, call: Call, now: datetime) -> None:
    """After ``call.status`` changed: its event, and an analysis job when a started call ends."""
    type_ = _BY_STATUS.get(call.status)
    if type_ is None:
        return
    await record(session, call=call, type_=type_, now=now)
    started = type_ is not EventType.CALL_STARTED and call.started_at is not None
    if started and await session.get(AnalysisJob, call.id) is None:
        session.add(
            AnalysisJob(
                call_id=call.id,
                team_id=call.team_id,
                status="pending",
                attempts=0,
                # A call ended elsewhere (API, another node) may still get its session's data;
                # the session's call_finished() makes the job due at once.
                next_attempt_at=now + timedelta(seconds=ANALYSIS_GRACE_S),
                last_error=None,
                created_at=now,
                updated_at=now,
            )
        )


async def call_finished(session: AsyncSession, *, call: Call, now: datetime, recording: bool) -> None:
    """A session stored what it gathered: announce the recording, and analyse the call now."""
    if recording:
        await record(session, call=call, type_=EventType.CALL_RECORDING_AVAILABLE, now=now)
    job = await session.get(AnalysisJob, call.id)
    if job is not None and job.status == "pending" and job.attempts == 0:
        job.next_attempt_at = now


async def turn_recorded(session: AsyncSession, *, turn: TranscriptTurn) -> None:
    if turn.role == "agent" and not turn.text:
        return  # a reply the caller never heard: no transcript event (the call's transcript keeps it)
    call = await session.get(Call, turn.call_id)
    if call is not None:
        type_ = EventType.CALL_TOOL_CALLED if turn.role == "tool" else EventType.TRANSCRIPT_FINAL
        await record(session, call=call, type_=type_, now=turn.ended_at, data=turn_data(turn))


async def wanted(session: AsyncSession, *, call: Call, type_: EventType) -> bool:
    """True if some destination of ``call`` would receive an event of ``type_`` now.

    Lets a live session skip opt-in events (``transcript.partial``) that nobody asked for: they are
    frequent, and a call without a subscriber should not write them at all.
    """
    probe = envelope(type_, timestamp=call.created_at, data={"call_id": call.id})
    return bool(await targets_for(session, team_id=call.team_id, call=call, type_=type_, envelope=probe))


async def transcript_partial(
    session: AsyncSession, *, team_id: str, call_id: str, text: str, now: datetime
) -> bool:
    """An interim transcript of the caller: one event, only if some destination wants it."""
    call = await session.get(Call, call_id)
    if call is None or call.team_id != team_id:
        return False
    type_ = EventType.TRANSCRIPT_PARTIAL
    data = {
        "call_id": call_id,
        "role": "user",
        "text": text,
        "final": False,
        "at": now.isoformat().replace("+00:00", "Z"),
    }
    payload = envelope(type_, timestamp=now, data=data)
    targets = await targets_for(session, team_id=team_id, call=call, type_=type_, envelope=payload)
    if not targets:
        return False
    event = await _add_event(session, call=call, type_=type_, payload=payload, now=now)
    enqueue(session, event=event, targets=targets, now=now)
    return True


async def provider_switched(
    session: AsyncSession, *, team_id: str, call_id: str, data: dict[str, Any], now: datetime
) -> None:
    """A live call moved one of its stages to a fallback engine (``data``: role, from, to, reason)."""
    call = await session.get(Call, call_id)
    if call is None or call.team_id != team_id:
        return
    type_ = EventType.CALL_PROVIDER_SWITCHED
    payload = envelope(type_, timestamp=now, data={"call_id": call_id, **data})
    targets = await targets_for(session, team_id=team_id, call=call, type_=type_, envelope=payload)
    if targets:
        event = await _add_event(session, call=call, type_=type_, payload=payload, now=now)
        enqueue(session, event=event, targets=targets, now=now)


@dataclass(frozen=True, slots=True)
class Replayed:
    """One page of a replay: how many events and deliveries were queued, and where the next page
    starts (``after_seq``; None when this page was the last)."""

    events: int
    deliveries: int
    after_seq: int | None


async def replay(
    session: AsyncSession,
    *,
    team_id: str,
    now: datetime,
    call_id: str | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
    endpoint_id: str | None = None,
    types: list[str] | None = None,
    after_seq: int | None = None,
    limit: int = REPLAY_PAGE,
) -> Replayed:
    """Deliver recorded events again, to the destinations they have *now* (or to one endpoint).

    The same event keeps its ``webhook-id``, so receivers that deduplicate see a replay as a repeat.
    At most ``limit`` events (in the order they happened) are queued per call, after ``after_seq`` (the
    previous page's ``Replayed.after_seq``): a wide range is replayed page by page, each page one short
    write, rather than in one transaction that would hold the writer for as long as it takes.
    """
    if call_id is None and (created_after is None or created_before is None):
        raise ValidationFailed("give a call_id, or both created_after and created_before")
    if not 1 <= limit <= REPLAY_PAGE:
        raise ValidationFailed(f"a replay page has 1 to {REPLAY_PAGE} events")
    if endpoint_id is not None:
        await repo.get_scoped(session, WebhookEndpoint, team_id=team_id, id=endpoint_id, deleted_at=None)
    stmt = select(WebhookEvent).where(WebhookEvent.team_id == team_id)
    if call_id is not None:
        await repo.get_scoped(session, Call, team_id=team_id, id=call_id)
        stmt = stmt.where(WebhookEvent.call_id == call_id)
    if created_after is not None:
        stmt = stmt.where(WebhookEvent.created_at >= created_after)
    if created_before is not None:
        stmt = stmt.where(WebhookEvent.created_at < created_before)
    if types:
        stmt = stmt.where(WebhookEvent.type.in_(types))
    if after_seq is not None:
        stmt = stmt.where(WebhookEvent.seq > after_seq)
    events = list((await session.execute(stmt.order_by(WebhookEvent.seq).limit(limit + 1))).scalars())
    more = len(events) > limit
    events = events[:limit]
    endpoints = await team_endpoints(session, team_id=team_id, endpoint_id=endpoint_id)
    call_ids = {e.call_id for e in events if e.call_id is not None}
    calls = {c.id: c for c in (await session.execute(select(Call).where(Call.id.in_(call_ids)))).scalars()}
    agent_ids = {c.agent_id for c in calls.values()}
    urls = await session.execute(select(Agent.id, Agent.webhook_url).where(Agent.id.in_(agent_ids)))
    agent_urls: dict[str, str | None] = {agent_id: url for agent_id, url in urls}
    deliveries: list[dict[str, Any]] = []
    for event in events:
        call = calls.get(event.call_id) if event.call_id is not None else None
        targets = choose_targets(
            endpoints,
            call=call,
            type_=EventType(event.type),
            envelope=event.payload,
            agent_url=agent_urls.get(call.agent_id) if call is not None else None,
            endpoints_only=endpoint_id is not None,
        )
        deliveries += [_delivery(event.seq, event, target, now) for target in targets]
    if deliveries:
        await session.execute(_INSERT_DELIVERIES, deliveries)
    return Replayed(len(events), len(deliveries), events[-1].seq if more else None)
