"""Deliveries: claiming due ones for the dispatcher, recording attempts, listing, manual retry.

Claiming is safe with any number of nodes on one database. On PostgreSQL the due rows are selected
``FOR UPDATE SKIP LOCKED`` (two nodes never take the same row); on SQLite the single writer serializes
claims. A claimed row stays ``pending`` with ``next_attempt_at`` pushed a *lease* ahead: if the node
dies mid-delivery, another node takes the row once the lease runs out. So delivery is at least once;
receivers deduplicate on ``webhook-id``.

A call's deliveries to one destination go out in event order, one at a time: a delivery waits while
an earlier one of the same call and destination is still pending (retrying). A ``dead`` one no longer
holds the others back.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import ColumnElement, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from callgate.errors import Conflict
from callgate.store import repo
from callgate.store.models_webhooks import WebhookAttempt, WebhookDelivery, WebhookEndpoint, WebhookEvent
from callgate.webhooks import endpoints
from callgate.webhooks.formats import get_format
from callgate.webhooks.signing import SecretSet

__all__ = ["AttemptResult", "Claimed", "DeliveryStatus", "claim", "complete", "list_deliveries", "retry"]


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    DEAD = "dead"
    CANCELLED = "cancelled"


@dataclass(frozen=True, slots=True)
class Claimed:
    """What one attempt needs, read in the claiming transaction."""

    id: str
    number: int
    message_id: str
    url: str
    method: str
    body: bytes
    content_type: str
    secrets: SecretSet


@dataclass(frozen=True, slots=True)
class AttemptResult:
    started_at: datetime
    duration_ms: int
    status_code: int | None
    error: str | None
    excerpt: str | None
    retry_after_s: float | None = None

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


async def any_due(session: AsyncSession, *, now: datetime) -> bool:
    stmt = select(WebhookDelivery.id).where(
        WebhookDelivery.status == DeliveryStatus.PENDING, WebhookDelivery.next_attempt_at <= now
    )
    return (await session.execute(stmt.limit(1))).first() is not None


async def claim(session: AsyncSession, *, now: datetime, limit: int, lease_s: float) -> list[Claimed]:
    """Take up to ``limit`` due deliveries for one attempt each (see the module docstring)."""
    d, e = WebhookDelivery, aliased(WebhookDelivery)
    earlier = (
        select(e.id)
        .where(
            e.status == DeliveryStatus.PENDING,
            e.call_id == d.call_id,
            e.destination == d.destination,
            e.event_seq < d.event_seq,
        )
        .exists()
    )
    stmt = (
        select(d)
        .where(d.status == DeliveryStatus.PENDING, d.next_attempt_at <= now, ~earlier)
        .order_by(d.next_attempt_at, d.event_seq)
        .limit(limit)
        .with_for_update(skip_locked=True, of=d)
    )
    claimed: list[Claimed] = []
    rows = list((await session.execute(stmt)).scalars())
    seqs = {row.event_seq for row in rows}
    events = {
        e.seq: e
        for e in (await session.execute(select(WebhookEvent).where(WebhookEvent.seq.in_(seqs)))).scalars()
    }
    for row in rows:
        event = events[row.event_seq]  # the foreign key cascades: it exists
        url = row.url
        if row.endpoint_id is not None:
            endpoint = await session.get(WebhookEndpoint, row.endpoint_id)
            if endpoint is None or endpoint.deleted_at is not None or not endpoint.enabled:
                _finish(row, DeliveryStatus.CANCELLED, now=now, error="the endpoint is disabled or deleted")
                continue
            url, secrets = endpoint.url, endpoints.secret_set(endpoint)
        else:
            secrets = endpoints.secret_set(await endpoints.team_secret(session, team_id=row.team_id, now=now))
        fmt = get_format(row.format)
        row.attempts += 1
        row.next_attempt_at = now + timedelta(seconds=lease_s)
        row.updated_at = now
        claimed.append(
            Claimed(
                id=row.id,
                number=row.attempts,
                message_id=event.id,
                url=url,
                method=row.method,
                body=fmt.render(fmt.event_type(event.type, event.payload) or event.type, event.payload),
                content_type=fmt.content_type,
                secrets=secrets,
            )
        )
    await session.flush()
    return claimed


def _finish(row: WebhookDelivery, status: DeliveryStatus, *, now: datetime, error: str | None = None) -> None:
    row.status = status.value
    row.updated_at = now
    if error is not None:
        row.last_error = error
    if status is DeliveryStatus.SUCCEEDED:
        row.delivered_at = now


async def complete(
    session: AsyncSession,
    *,
    results: list[tuple[Claimed, AttemptResult, float]],
    now: datetime,
    max_attempts: int,
) -> list[str]:
    """Record attempts ``(claimed, result, next_delay_s)`` and move each delivery on: succeeded, retried
    at ``now + next_delay_s``, or dead. Returns their statuses. A row changed meanwhile (retried by hand,
    or re-claimed after its lease ran out) only gets the attempt."""
    ids = [claimed.id for claimed, _, _ in results]
    stmt = select(WebhookDelivery).where(WebhookDelivery.id.in_(ids)).with_for_update()
    rows = {row.id: row for row in (await session.execute(stmt)).scalars()}
    statuses: list[str] = []
    for claimed, result, next_delay_s in results:
        session.add(
            WebhookAttempt(
                delivery_id=claimed.id,
                number=claimed.number,
                url=claimed.url,
                started_at=result.started_at,
                duration_ms=result.duration_ms,
                status_code=result.status_code,
                error=result.error[:500] if result.error else None,
                response_excerpt=result.excerpt,
            )
        )
        row = rows.get(claimed.id)
        if row is None or row.status != DeliveryStatus.PENDING or row.attempts != claimed.number:
            statuses.append(row.status if row is not None else DeliveryStatus.CANCELLED.value)
            continue
        row.last_status_code = result.status_code
        row.last_error = result.error[:500] if result.error else None
        if result.ok:
            _finish(row, DeliveryStatus.SUCCEEDED, now=now)
        elif row.attempts >= max_attempts:
            _finish(row, DeliveryStatus.DEAD, now=now)
        else:
            row.next_attempt_at = now + timedelta(seconds=next_delay_s)
            row.updated_at = now
        statuses.append(row.status)
    await session.flush()
    return statuses


async def list_deliveries(
    session: AsyncSession,
    *,
    team_id: str,
    limit: int,
    cursor: str | None,
    filters: dict[str, Any],
) -> repo.Page[WebhookDelivery]:
    """Newest first. ``filters``: status, event_type, call_id, endpoint_id, created_after/before."""
    d = WebhookDelivery
    where: list[ColumnElement[bool]] = []
    for name in ("status", "event_type", "call_id", "endpoint_id"):
        if filters.get(name) is not None:
            where.append(getattr(d, name) == filters[name])
    if filters.get("created_after") is not None:
        where.append(d.created_at >= filters["created_after"])
    if filters.get("created_before") is not None:
        where.append(d.created_at < filters["created_before"])
    return await repo.list_page(session, d, team_id=team_id, limit=limit, cursor=cursor, where=where)


async def get_delivery(
    session: AsyncSession, *, team_id: str, delivery_id: str, for_update: bool = False
) -> WebhookDelivery:
    return await repo.get_scoped(
        session, WebhookDelivery, team_id=team_id, id=delivery_id, for_update=for_update
    )


async def event_ids(session: AsyncSession, rows: list[WebhookDelivery]) -> dict[int, str]:
    """The public ids of the events these deliveries carry, by event sequence number."""
    seqs = {r.event_seq for r in rows}
    if not seqs:
        return {}
    stmt = select(WebhookEvent.seq, WebhookEvent.id).where(WebhookEvent.seq.in_(seqs))
    return {seq: id_ for seq, id_ in (await session.execute(stmt)).all()}


async def attempts_of(session: AsyncSession, *, delivery_id: str) -> list[WebhookAttempt]:
    stmt = select(WebhookAttempt).where(WebhookAttempt.delivery_id == delivery_id).order_by(WebhookAttempt.id)
    return list((await session.execute(stmt)).scalars())


async def event_of(session: AsyncSession, *, delivery: WebhookDelivery) -> WebhookEvent:
    event = await session.get(WebhookEvent, delivery.event_seq)
    assert event is not None
    return event


async def retry(session: AsyncSession, *, team_id: str, delivery_id: str, now: datetime) -> WebhookDelivery:
    """Send a finished delivery (dead, cancelled, or even succeeded) again, with a fresh attempt budget."""
    row = await get_delivery(session, team_id=team_id, delivery_id=delivery_id, for_update=True)
    if row.status == DeliveryStatus.PENDING:
        raise Conflict("the delivery is already pending; it will be attempted again")
    if row.endpoint_id is not None:
        await endpoints.get_endpoint(session, team_id=team_id, endpoint_id=row.endpoint_id)
    row.status = DeliveryStatus.PENDING.value
    row.attempts = 0
    row.next_attempt_at = now
    row.updated_at = now
    row.delivered_at = None
    await session.flush()
    return row
