"""Node leases: every running node holds a lease, renewed on a heartbeat; a live call records the node
holding its session (``call.node_id``, set when the caller joins). When a node dies without ending its
calls (kill -9, a crash, a lost machine) its lease lapses, and any node — the same one once restarted
under a new id, or another — ends those calls ``node_lost``, with their events and webhooks, so a dead
node never leaves calls ``in_progress`` or counting against a team's live-call cap.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import and_, delete, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from callgate.domain import calls
from callgate.domain.lifecycle import LIVE, CallStatus, EndReason
from callgate.store.models import Call, NodeLease
from callgate.webhooks import outbox

LEGACY_GRACE = timedelta(days=1)
"""Calls joined before nodes recorded themselves (``node_id`` empty) may still run on a node of the
previous version during a rolling upgrade: they count as lost only once surely over."""


async def renew(session: AsyncSession, *, node_id: str, now: datetime, lease_s: float) -> None:
    """Take or extend ``node_id``'s lease until ``now + lease_s``."""
    lease = await session.get(NodeLease, node_id)
    expires = now + timedelta(seconds=lease_s)
    if lease is None:
        session.add(NodeLease(id=node_id, started_at=now, renewed_at=now, expires_at=expires))
    else:
        lease.renewed_at, lease.expires_at = now, expires


async def release(session: AsyncSession, *, node_id: str) -> None:
    """The node stops: its lease goes at once (calls it still held are then ended by the next sweep)."""
    await session.execute(delete(NodeLease).where(NodeLease.id == node_id))


async def end_orphaned_calls(session: AsyncSession, *, now: datetime, limit: int = 200) -> list[str]:
    """End live calls whose node holds no lease any more (``node_lost``). Safe on several nodes at once
    (``SKIP LOCKED`` on PostgreSQL; SQLite has one writer). Forgets leases long expired."""
    held = select(NodeLease.id).where(NodeLease.expires_at > now)
    stmt = (
        select(Call)
        .where(
            Call.status.in_(LIVE),
            or_(
                Call.node_id.not_in(held),
                and_(Call.node_id.is_(None), Call.connected_at < now - LEGACY_GRACE),
            ),
        )
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    ended: list[str] = []
    for call in (await session.execute(stmt)).scalars():
        await calls.transition(session, call=call, to=CallStatus.FAILED, reason=EndReason.NODE_LOST, now=now)
        await outbox.call_finished(session, call=call, now=now, recording=False)
        ended.append(call.id)
    await session.execute(delete(NodeLease).where(NodeLease.expires_at < now - timedelta(days=1)))
    return ended
