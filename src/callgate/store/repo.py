"""Team-scoped data access shared by every resource.

Everything is filtered by ``team_id``: another team's object is simply not found.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, Protocol, TypeVar

from sqlalchemy import ColumnElement, and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from callgate.errors import BadRequest, NotFound


class Scoped(Protocol):
    id: Any
    team_id: Any
    created_at: Any


M = TypeVar("M", bound=Scoped)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: list[T]
    next_cursor: str | None


def encode_cursor(created_at: datetime, id_: str) -> str:
    raw = json.dumps([created_at.isoformat(), id_]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created, id_ = json.loads(raw)
        at = datetime.fromisoformat(created)
        if at.tzinfo is not None:
            at.astimezone(UTC)  # compared in UTC: a time that has no UTC equivalent is not a cursor
    except (binascii.Error, ValueError, TypeError, OverflowError) as exc:
        raise BadRequest("the cursor is not valid") from exc
    if at.tzinfo is None or "\x00" in str(id_):
        raise BadRequest("the cursor is not valid")
    return at, str(id_)


async def get_scoped(
    session: AsyncSession, model: type[M], *, team_id: str, id: str, for_update: bool = False, **filters: Any
) -> M:
    cols: Any = model
    stmt = select(model).where(cols.id == id, cols.team_id == team_id)
    for name, value in filters.items():
        stmt = stmt.where(getattr(cols, name) == value)
    if for_update:
        stmt = stmt.with_for_update()
    row = (await session.execute(stmt)).scalar_one_or_none()
    if row is None:
        raise NotFound(f"no {model.__tablename__.replace('_', ' ')} with id {id!r}")  # type: ignore[attr-defined]
    return row


async def list_page(
    session: AsyncSession,
    model: type[M],
    *,
    team_id: str,
    limit: int,
    cursor: str | None,
    where: Sequence[ColumnElement[bool]] = (),
) -> Page[M]:
    """Newest first, keyset-paginated on ``(created_at, id)``."""
    cols: Any = model
    created: InstrumentedAttribute[datetime] = cols.created_at
    ident: InstrumentedAttribute[str] = cols.id
    stmt = select(model).where(cols.team_id == team_id, *where)
    if cursor:
        at, last_id = decode_cursor(cursor)
        stmt = stmt.where(or_(created < at, and_(created == at, ident < last_id)))
    stmt = stmt.order_by(created.desc(), ident.desc()).limit(limit + 1)
    rows = list((await session.execute(stmt)).scalars())
    more = len(rows) > limit
    rows = rows[:limit]
    last = rows[-1] if more and rows else None
    return Page(items=rows, next_cursor=encode_cursor(last.created_at, last.id) if last else None)
