"""The set of origins any active publishable key allows (for answering CORS preflights)."""

from __future__ import annotations

import time

from sqlalchemy import select

from callgate.auth.keys import KeyType, normalize_origin
from callgate.store.db import Database
from callgate.store.models import ApiKey


class OriginIndex:
    def __init__(self, db: Database, *, ttl_s: float) -> None:
        self._db = db
        self._ttl = ttl_s
        self._origins: frozenset[str] = frozenset()
        self._fresh_until = 0.0

    def invalidate(self) -> None:
        self._fresh_until = 0.0

    async def allows(self, origin: str) -> bool:
        try:
            normalized = normalize_origin(origin)
        except ValueError:
            return False
        if time.monotonic() >= self._fresh_until:
            async with self._db.read() as session:
                rows = await session.execute(
                    select(ApiKey.allowed_origins).where(
                        ApiKey.type == KeyType.PUBLISHABLE.value, ApiKey.revoked_at.is_(None)
                    )
                )
                self._origins = frozenset(o for (origins,) in rows for o in origins)
            self._fresh_until = time.monotonic() + self._ttl
        return normalized in self._origins
