"""Teams, API keys and authentication of a presented key."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from callgate.auth import keys as keylib
from callgate.auth.keys import KeyType
from callgate.auth.ratelimit import validate_limit
from callgate.domain.ids import new_id
from callgate.errors import NotFound, Unauthenticated, ValidationFailed
from callgate.store.db import Database
from callgate.store.models import ApiKey, Team

DEFAULT_TEAM = "default"
_TOUCH_EVERY = timedelta(seconds=60)


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the verified key and its team."""

    key_id: str
    team_id: str
    type: KeyType
    allowed_origins: tuple[str, ...]
    agent_ids: tuple[str, ...]
    rate_limit: str
    token_ttl_s: int | None

    def may_use_agent(self, agent_id: str) -> bool:
        return not self.agent_ids or agent_id in self.agent_ids


async def find_team_id(session: AsyncSession, *, name: str) -> str | None:
    return (await session.execute(select(Team.id).where(Team.name == name))).scalar_one_or_none()


async def get_or_create_team(session: AsyncSession, *, name: str, now: datetime, max_live_calls: int) -> Team:
    team = (await session.execute(select(Team).where(Team.name == name))).scalar_one_or_none()
    if team is None:
        team = Team(id=new_id("team"), name=name, max_live_calls=max_live_calls, created_at=now)
        session.add(team)
        await session.flush()
    return team


async def create_key(
    session: AsyncSession,
    *,
    team_id: str,
    key_type: KeyType,
    now: datetime,
    name: str | None = None,
    allowed_origins: list[str] | None = None,
    agent_ids: list[str] | None = None,
    rate_limit: str | None = None,
    token_ttl_s: int | None = None,
) -> tuple[ApiKey, str]:
    """Create a key; returns the row and the plaintext, which is never stored."""
    origins = [keylib.normalize_origin(o) for o in (allowed_origins or [])]
    agents = list(dict.fromkeys(agent_ids or []))
    if key_type is KeyType.PUBLISHABLE and not origins:
        raise ValidationFailed("a publishable key needs at least one allowed origin")
    if key_type is KeyType.SHARED and len(agents) != 1:
        raise ValidationFailed("a shared key is bound to exactly one agent")
    if key_type is KeyType.SECRET and (origins or agents):
        raise ValidationFailed("a secret key takes no origins or agent list")
    limit = validate_limit(rate_limit or keylib.DEFAULT_RATE_LIMITS[key_type])
    if token_ttl_s is not None and not 5 <= token_ttl_s <= 3600:
        raise ValidationFailed("token_ttl_s must be between 5 and 3600 seconds")
    new = keylib.generate(key_type)
    row = ApiKey(
        id=new_id("key"),
        team_id=team_id,
        type=key_type.value,
        name=name,
        lookup_id=new.lookup_id,
        secret_hash=new.secret_hash,
        allowed_origins=origins,
        agent_ids=agents,
        rate_limit=limit,
        token_ttl_s=token_ttl_s,
        created_at=now,
        last_used_at=None,
        revoked_at=None,
    )
    session.add(row)
    await session.flush()
    return row, new.plaintext


async def revoke_key(session: AsyncSession, *, team_id: str, key_id: str, now: datetime) -> None:
    result = await session.execute(
        update(ApiKey)
        .where(ApiKey.id == key_id, ApiKey.team_id == team_id, ApiKey.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    if result.rowcount == 0:  # type: ignore[attr-defined]
        raise NotFound(f"no active key with id {key_id!r}")


class KeyAuthenticator:
    """Verifies presented keys, with a short in-process cache of verified rows.

    The cache keeps the hot path off the database; revocation on this node clears it at once, and other
    nodes see a revocation within ``cache_ttl_s``.
    """

    def __init__(self, db: Database, *, cache_ttl_s: float) -> None:
        self._db = db
        self._ttl = cache_ttl_s
        self._cache: dict[str, tuple[float, ApiKey]] = {}

    def forget(self) -> None:
        self._cache.clear()

    async def _load(self, lookup_id: str) -> ApiKey | None:
        hit = self._cache.get(lookup_id)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        async with self._db.read() as session:
            row = (
                await session.execute(select(ApiKey).where(ApiKey.lookup_id == lookup_id))
            ).scalar_one_or_none()
        if row is not None and self._ttl > 0:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[lookup_id] = (time.monotonic() + self._ttl, row)
        return row

    async def authenticate(self, raw: str, *, now: datetime) -> Principal:
        parsed = keylib.parse(raw)
        if parsed is None:
            raise Unauthenticated("the API key is not valid")
        row = await self._load(parsed.lookup_id)
        if (
            row is None
            or not keylib.verify(parsed, row.secret_hash)
            or row.type != parsed.type.value
            or row.revoked_at is not None
        ):
            raise Unauthenticated("the API key is not valid")
        if row.last_used_at is None or now - row.last_used_at > _TOUCH_EVERY:
            row.last_used_at = now
            await self._db.write(_touch(row.id, now))
        return Principal(
            key_id=row.id,
            team_id=row.team_id,
            type=KeyType(row.type),
            allowed_origins=tuple(row.allowed_origins),
            agent_ids=tuple(row.agent_ids),
            rate_limit=row.rate_limit,
            token_ttl_s=row.token_ttl_s,
        )


def _touch(key_id: str, now: datetime):  # type: ignore[no-untyped-def]
    async def job(session: AsyncSession) -> None:
        await session.execute(update(ApiKey).where(ApiKey.id == key_id).values(last_used_at=now))

    return job
