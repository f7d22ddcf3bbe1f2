"""Where used call tokens are remembered: the database, or Redis when configured."""

from __future__ import annotations

from datetime import datetime, timedelta

from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy import delete
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from callgate.auth.tokens import CallToken
from callgate.clock import Clock
from callgate.errors import ServiceUnavailable
from callgate.store.db import Database
from callgate.store.models import UsedToken


class DatabaseLedger:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    async def consume(self, token: CallToken) -> bool:
        now = self._clock.now()
        values = {"jti": token.jti, "call_id": token.call_id, "expires_at": token.expires_at, "used_at": now}
        stmt = (pg_insert if self._db.dialect == "postgresql" else sqlite_insert)(UsedToken).values(**values)
        stmt = stmt.on_conflict_do_nothing(index_elements=["jti"])

        async def job(session: AsyncSession) -> bool:
            result = await session.execute(stmt)
            return bool(result.rowcount)  # type: ignore[attr-defined]

        return await self._db.write(job)

    async def purge(self, *, before: datetime) -> None:
        """Forget tokens that expired long ago (they fail on expiry anyway)."""

        async def job(session: AsyncSession) -> None:
            await session.execute(delete(UsedToken).where(UsedToken.expires_at < before - timedelta(hours=1)))

        await self._db.write(job)


class RedisLedger:
    def __init__(self, redis: Redis, clock: Clock) -> None:
        self._redis = redis
        self._clock = clock

    async def consume(self, token: CallToken) -> bool:
        ttl = max(1, int((token.expires_at - self._clock.now()).total_seconds()) + 60)
        try:
            return bool(
                await self._redis.set(f"callgate:used-token:{token.jti}", token.call_id, nx=True, ex=ttl)
            )
        except RedisError as exc:
            raise ServiceUnavailable("the token store (Redis) is not available") from exc

    async def purge(self, *, before: datetime) -> None:
        """Redis expires used tokens by itself."""
