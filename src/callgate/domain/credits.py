"""Call credits: an optional per-team balance of call-seconds that live calls draw down.

A team without a balance is not metered. The balance is settled lazily: the stored value is what was
left at ``settled_at``, and reading it subtracts the seconds every call of the team was in progress
since then (live calls count up to now). Creating a call is refused once nothing is left; a call that
is already live is not cut off, so the balance can go below zero by the last call's overrun.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from callgate.errors import InsufficientCredits, ValidationFailed
from callgate.store.models import Call
from callgate.store.models_dialects import TeamCredit


async def _used_since(session: AsyncSession, *, team_id: str, since: datetime, now: datetime) -> float:
    stmt = select(Call.started_at, Call.ended_at).where(
        Call.team_id == team_id,
        Call.started_at.is_not(None),
        or_(Call.ended_at.is_(None), Call.ended_at > since),
    )
    used = 0.0
    for started_at, ended_at in await session.execute(stmt):
        if started_at is None:
            continue
        start, end = max(started_at, since), min(ended_at or now, now)
        used += max(0.0, (end - start).total_seconds())
    return used


async def remaining_seconds(session: AsyncSession, *, team_id: str, now: datetime) -> float | None:
    """The team's call-seconds left now; None when the team is not metered."""
    row = await session.get(TeamCredit, team_id)
    if row is None:
        return None
    return row.balance_s - await _used_since(session, team_id=team_id, since=row.settled_at, now=now)


async def set_balance(session: AsyncSession, *, team_id: str, seconds: float | None, now: datetime) -> None:
    """Give the team ``seconds`` of calls from now on (None: stop metering the team)."""
    row = await session.get(TeamCredit, team_id, with_for_update=True)
    if seconds is None:
        if row is not None:
            await session.delete(row)
        await session.flush()
        return
    if not 0 <= seconds <= 10**9:
        raise ValidationFailed("a credit balance is between 0 and 1e9 seconds")
    if row is None:
        session.add(TeamCredit(team_id=team_id, balance_s=seconds, settled_at=now, updated_at=now))
    else:
        row.balance_s, row.settled_at, row.updated_at = seconds, now, now
    await session.flush()


async def check(session: AsyncSession, *, team_id: str, now: datetime) -> None:
    """Raise :class:`InsufficientCredits` when the team is metered and has nothing left."""
    left = await remaining_seconds(session, team_id=team_id, now=now)
    if left is not None and left <= 0:
        raise InsufficientCredits("the team has no call credits left")
