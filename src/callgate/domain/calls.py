"""Calls: creation, the lifecycle transitions, ending, and the join-deadline sweep."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.ext.asyncio import AsyncSession

# Creation has a module of its own; callers reach it through this one as well.
from callgate.domain.call_creation import CreatedCall as CreatedCall
from callgate.domain.call_creation import NewCall as NewCall
from callgate.domain.call_creation import PendingCall as PendingCall
from callgate.domain.call_creation import create_calls as create_calls
from callgate.domain.lifecycle import LIVE, CallStatus, EndReason, check_transition, terminal_status
from callgate.errors import CallgateError, ConcurrencyLimited
from callgate.store import repo
from callgate.store.models import Call, CallEvent, Team, TranscriptTurn
from callgate.webhooks import outbox
from callgate.webhooks.events import EventType


async def live_call_count(session: AsyncSession, *, team_id: str) -> int:
    stmt = select(func.count()).select_from(Call).where(Call.team_id == team_id, Call.status.in_(LIVE))
    return int((await session.execute(stmt)).scalar_one())


async def _check_capacity(session: AsyncSession, *, team_id: str) -> None:
    # Locking the team row serialises joins of one team across nodes (PostgreSQL); SQLite's single
    # writer (BEGIN IMMEDIATE) already does.
    stmt = select(Team.max_live_calls).where(Team.id == team_id).with_for_update()
    cap = (await session.execute(stmt)).scalar_one()
    if await live_call_count(session, team_id=team_id) >= cap:
        raise ConcurrencyLimited(f"the team already has {cap} live calls (its limit)")


async def create_call(
    session: AsyncSession, *, team_id: str, spec: NewCall, now: datetime, join_deadline: datetime
) -> Call:
    """Create one call inside a larger write (phone calls: the caller adds the phone side next) and
    return it loaded; raises what refuses it. Web calls are created in batches by ``create_calls``."""
    pending = PendingCall(team_id=team_id, spec=spec, now=now, join_deadline=join_deadline)
    [outcome] = await create_calls(session, [pending])
    if isinstance(outcome, CallgateError):
        raise outcome
    return await get_call(session, team_id=team_id, call_id=outcome.id)


async def get_call(session: AsyncSession, *, team_id: str, call_id: str, for_update: bool = False) -> Call:
    return await repo.get_scoped(session, Call, team_id=team_id, id=call_id, for_update=for_update)


async def get_call_any_team(session: AsyncSession, *, call_id: str) -> Call | None:
    """For token-authenticated paths, where the team comes from the verified token."""
    return (await session.execute(select(Call).where(Call.id == call_id))).scalar_one_or_none()


async def list_calls(
    session: AsyncSession,
    *,
    team_id: str,
    limit: int,
    cursor: str | None,
    agent_id: str | None = None,
    status: str | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
) -> repo.Page[Call]:
    where: list[ColumnElement[bool]] = []
    if agent_id is not None:
        where.append(Call.agent_id == agent_id)
    if status is not None:
        where.append(Call.status == status)
    if created_after is not None:
        where.append(Call.created_at >= created_after)
    if created_before is not None:
        where.append(Call.created_at < created_before)
    return await repo.list_page(session, Call, team_id=team_id, limit=limit, cursor=cursor, where=where)


async def transition(
    session: AsyncSession,
    *,
    call: Call,
    to: CallStatus,
    now: datetime,
    reason: EndReason | None = None,
    data: dict[str, Any] | None = None,
) -> Call:
    """Move ``call`` (loaded ``for_update``) to ``to``; record the event. Raises IllegalTransition."""
    old = CallStatus(call.status)
    check_transition(old, to, reason)
    call.status = to.value
    if to is CallStatus.CONNECTING:
        call.connected_at = now
    elif to is CallStatus.IN_PROGRESS:
        call.started_at = now
    else:
        call.ended_at = now
        call.end_reason = reason.value if reason else None
    session.add(
        CallEvent(
            call_id=call.id,
            type=f"call.{to.value}",
            from_status=old.value,
            to_status=to.value,
            reason=reason.value if reason else None,
            data=data or {},
            created_at=now,
        )
    )
    await session.flush()
    await outbox.call_transitioned(session, call=call, now=now)
    return call


async def end_call(
    session: AsyncSession,
    *,
    team_id: str,
    call_id: str,
    reason: EndReason,
    now: datetime,
    note: str | None = None,
) -> Call:
    """End a call on request; ``note`` (free text, e.g. why) is kept on the event."""
    call = await get_call(session, team_id=team_id, call_id=call_id, for_update=True)
    data = {"note": note} if note else None
    return await transition(session, call=call, to=terminal_status(reason), reason=reason, now=now, data=data)


async def finish_call(
    session: AsyncSession,
    *,
    team_id: str,
    call_id: str,
    reason: EndReason,
    now: datetime,
    data: dict[str, Any] | None = None,
    recording_path: str | None = None,
) -> Call:
    """A session is over: store what it gathered and end the call unless it already ended elsewhere."""
    call = await get_call(session, team_id=team_id, call_id=call_id, for_update=True)
    if data is not None:
        call.data = data
    if recording_path is not None:
        call.recording_path = recording_path
    if not CallStatus(call.status).is_terminal:
        await transition(session, call=call, to=terminal_status(reason), reason=reason, now=now)
    await outbox.call_finished(session, call=call, now=now, recording=recording_path is not None)
    return call


async def attach_recording(
    session: AsyncSession, *, team_id: str, call_id: str, location: str, now: datetime
) -> Call:
    """A session's recording is kept at ``location``: store it on the call and announce it."""
    call = await get_call(session, team_id=team_id, call_id=call_id, for_update=True)
    call.recording_path = location
    await outbox.record(session, call=call, type_=EventType.CALL_RECORDING_AVAILABLE, now=now)
    return call


async def join_call(
    session: AsyncSession, *, team_id: str, call_id: str, now: datetime, node_id: str | None = None
) -> Call:
    """A caller's transport connected with a valid token: created → connecting (capacity checked).
    ``node_id``: the node that will hold the session (its lease covers the call, ``domain.nodes``)."""
    call = await get_call(session, team_id=team_id, call_id=call_id, for_update=True)
    if call.status == CallStatus.CREATED.value:
        await _check_capacity(session, team_id=team_id)
    call.node_id = node_id
    return await transition(session, call=call, to=CallStatus.CONNECTING, now=now)


async def sweep_missed_joins(session: AsyncSession, *, now: datetime, limit: int = 500) -> list[str]:
    """Fail calls nobody joined before their deadline. Safe on several nodes at once."""
    stmt = (
        select(Call)
        .where(Call.status == CallStatus.CREATED.value, Call.join_deadline < now)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    ended: list[str] = []
    for call in (await session.execute(stmt)).scalars():
        await transition(
            session, call=call, to=CallStatus.FAILED, reason=EndReason.JOIN_DEADLINE_MISSED, now=now
        )
        ended.append(call.id)
    return ended


async def add_turn(session: AsyncSession, *, call_id: str, fields: dict[str, Any]) -> TranscriptTurn:
    seq = (
        await session.execute(
            select(func.coalesce(func.max(TranscriptTurn.seq), 0)).where(TranscriptTurn.call_id == call_id)
        )
    ).scalar_one()
    turn = TranscriptTurn(call_id=call_id, seq=int(seq) + 1, **fields)
    session.add(turn)
    await session.flush()
    await outbox.turn_recorded(session, turn=turn)
    return turn


async def list_turns(session: AsyncSession, *, call_id: str) -> list[TranscriptTurn]:
    stmt = select(TranscriptTurn).where(TranscriptTurn.call_id == call_id).order_by(TranscriptTurn.seq)
    return list((await session.execute(stmt)).scalars())


async def add_event(
    session: AsyncSession, *, team_id: str, call_id: str, type_: str, data: dict[str, Any], now: datetime
) -> None:
    """An event of a live call that is not a status change (e.g. ``call.provider_switched``), with its
    webhook."""
    call = await get_call(session, team_id=team_id, call_id=call_id)
    session.add(
        CallEvent(call_id=call.id, type=type_, from_status=None, to_status=None, reason=None, data=data,
                  created_at=now)
    )  # fmt: skip
    await session.flush()
    if type_ == EventType.CALL_PROVIDER_SWITCHED:
        await outbox.provider_switched(session, team_id=team_id, call_id=call_id, data=data, now=now)


async def list_events(session: AsyncSession, *, call_id: str) -> list[CallEvent]:
    stmt = select(CallEvent).where(CallEvent.call_id == call_id).order_by(CallEvent.id)
    return list((await session.execute(stmt)).scalars())


def percentile(values: list[int], q: float) -> int | None:
    """Nearest-rank percentile (``q`` in 0..100)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(q / 100 * len(ordered))))
    return ordered[rank - 1]
