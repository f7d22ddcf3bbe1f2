"""Webhook endpoints and signing secrets: create, change, delete, rotate (data access, no HTTP).

A secret is returned only by :func:`create_endpoint` and the rotate functions; nothing else reads it
out. Rotation keeps the previous secret valid for an overlap window, during which deliveries carry
both signatures.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import String, or_, select, type_coerce, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import flag_modified

from callgate.store import repo
from callgate.store.models_webhooks import WebhookDelivery, WebhookEndpoint, WebhookSigningSecret
from callgate.store.sealing import PREFIX, current_prefix
from callgate.webhooks.events import new_id
from callgate.webhooks.signing import SecretSet, new_secret

__all__ = [
    "create_endpoint",
    "delete_endpoint",
    "get_endpoint",
    "list_endpoints",
    "rotate_endpoint_secret",
    "rotate_team_secret",
    "seal_stored_secrets",
    "team_secret",
    "update_endpoint",
]

FIELDS = ("url", "description", "events", "agent_ids", "enabled")


async def create_endpoint(
    session: AsyncSession, *, team_id: str, fields: dict[str, Any], now: datetime
) -> WebhookEndpoint:
    endpoint = WebhookEndpoint(
        id=new_id("endpoint"),
        team_id=team_id,
        url=fields["url"],
        description=fields.get("description"),
        events=list(fields.get("events") or []),
        agent_ids=list(fields.get("agent_ids") or []),
        enabled=bool(fields.get("enabled", True)),
        secret=new_secret(),
        previous_secret=None,
        previous_secret_expires_at=None,
        created_at=now,
        updated_at=now,
        deleted_at=None,
    )
    session.add(endpoint)
    await session.flush()
    return endpoint


async def get_endpoint(
    session: AsyncSession, *, team_id: str, endpoint_id: str, for_update: bool = False
) -> WebhookEndpoint:
    """The team's endpoint; :class:`~callgate.errors.NotFound` for another team's or a deleted one."""
    return await repo.get_scoped(
        session, WebhookEndpoint, team_id=team_id, id=endpoint_id, for_update=for_update, deleted_at=None
    )


async def list_endpoints(
    session: AsyncSession, *, team_id: str, limit: int, cursor: str | None
) -> repo.Page[WebhookEndpoint]:
    return await repo.list_page(
        session,
        WebhookEndpoint,
        team_id=team_id,
        limit=limit,
        cursor=cursor,
        where=[WebhookEndpoint.deleted_at.is_(None)],
    )


async def update_endpoint(
    session: AsyncSession, *, team_id: str, endpoint_id: str, changes: dict[str, Any], now: datetime
) -> WebhookEndpoint:
    endpoint = await get_endpoint(session, team_id=team_id, endpoint_id=endpoint_id, for_update=True)
    for name, value in changes.items():
        if name in FIELDS:
            setattr(endpoint, name, list(value) if name in ("events", "agent_ids") else value)
    endpoint.updated_at = now
    await session.flush()
    return endpoint


async def delete_endpoint(session: AsyncSession, *, team_id: str, endpoint_id: str, now: datetime) -> None:
    """Soft delete (its delivery history stays); its pending deliveries are cancelled."""
    endpoint = await get_endpoint(session, team_id=team_id, endpoint_id=endpoint_id, for_update=True)
    endpoint.deleted_at = now
    endpoint.enabled = False
    await session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.endpoint_id == endpoint.id, WebhookDelivery.status == "pending")
        .values(status="cancelled", updated_at=now, last_error="the endpoint was deleted")
    )
    await session.flush()


def _rotate(row: WebhookEndpoint | WebhookSigningSecret, *, now: datetime, overlap_s: int) -> None:
    row.previous_secret = row.secret if overlap_s > 0 else None
    row.previous_secret_expires_at = now + timedelta(seconds=overlap_s) if overlap_s > 0 else None
    row.secret = new_secret()


async def rotate_endpoint_secret(
    session: AsyncSession, *, team_id: str, endpoint_id: str, now: datetime, overlap_s: int
) -> WebhookEndpoint:
    """A new secret; the old one keeps signing for ``overlap_s`` seconds (0: stops at once)."""
    endpoint = await get_endpoint(session, team_id=team_id, endpoint_id=endpoint_id, for_update=True)
    _rotate(endpoint, now=now, overlap_s=overlap_s)
    endpoint.updated_at = now
    await session.flush()
    return endpoint


async def team_secret(session: AsyncSession, *, team_id: str, now: datetime) -> WebhookSigningSecret:
    """The team's secret for agent and call URLs, created on first use."""
    row = await session.get(WebhookSigningSecret, team_id)
    if row is None:
        row = WebhookSigningSecret(
            team_id=team_id,
            secret=new_secret(),
            previous_secret=None,
            previous_secret_expires_at=None,
            created_at=now,
            rotated_at=now,
        )
        session.add(row)
        await session.flush()
    return row


async def rotate_team_secret(
    session: AsyncSession, *, team_id: str, now: datetime, overlap_s: int
) -> WebhookSigningSecret:
    row = await team_secret(session, team_id=team_id, now=now)
    _rotate(row, now=now, overlap_s=overlap_s)
    row.rotated_at = now
    await session.flush()
    return row


def secret_set(row: WebhookEndpoint | WebhookSigningSecret) -> SecretSet:
    return SecretSet(row.secret, row.previous_secret, row.previous_secret_expires_at)


async def seal_stored_secrets(session: AsyncSession) -> int:
    """Seal secrets stored in plain text (by an older version) or sealed under a previous secret key;
    returns how many rows were rewritten. Run at start; cheap when there is nothing to do."""
    current = current_prefix()
    count = 0
    models: tuple[type[WebhookEndpoint] | type[WebhookSigningSecret], ...] = (
        WebhookEndpoint,
        WebhookSigningSecret,
    )
    for model in models:
        stored, previous = type_coerce(model.secret, String), type_coerce(model.previous_secret, String)
        plain = or_(~stored.startswith(current), previous.is_not(None) & ~previous.startswith(current))
        for row in (await session.execute(select(model).where(plain))).scalars():
            values: list[str | None] = [getattr(row, "secret", None), getattr(row, "previous_secret", None)]
            if all(v is None or v.startswith(PREFIX) for v in values):
                continue  # sealed under a key not installed: it cannot be opened, only rotated
            flag_modified(row, "secret")  # the value read is the same: make the ORM write it again
            if values[1] is not None:
                flag_modified(row, "previous_secret")
            count += 1
    await session.flush()
    return count
