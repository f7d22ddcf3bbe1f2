"""Per-key request limits on the ``limits`` library.

In-process counters by default; a Redis store when ``CALLGATE_REDIS_URL`` is set, so that every node
shares one budget per key. Fixed windows: O(1) per request and an exact reset time for the headers.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from functools import lru_cache

from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import FixedWindowRateLimiter
from redis.asyncio import Redis

from callgate.errors import RateLimited


@dataclass(frozen=True, slots=True)
class RateDecision:
    limit: int
    remaining: int
    reset_after_s: int

    def headers(self) -> dict[str, str]:
        """IETF ``RateLimit-*`` fields (draft-ietf-httpapi-ratelimit-headers)."""
        return {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(self.reset_after_s),
        }


@lru_cache(maxsize=256)
def parse_limit(spec: str) -> RateLimitItem:
    """``"100/second"``, ``"20 per minute"`` … (the ``limits`` notation). Raises ValueError."""
    return parse(spec)


def validate_limit(spec: str) -> str:
    parse_limit(spec)
    return spec


class RateLimiter:
    def __init__(self, *, redis: Redis | None = None) -> None:
        storage: Storage
        if redis is not None:
            # Share the node's Redis connection pool (closed with it) rather than opening another.
            storage = RedisStorage(
                "async+redis://",
                implementation="redispy",
                key_prefix="callgate:rl",
                connection_pool=redis.connection_pool,  # type: ignore[arg-type]
            )
        else:
            storage = MemoryStorage()
        self.storage = storage
        self._limiter = FixedWindowRateLimiter(storage)

    async def hit(self, spec: str, *identifiers: str) -> RateDecision:
        """Count one request; raise :class:`RateLimited` (with the header values) when over."""
        item = parse_limit(spec)
        allowed = await self._limiter.hit(item, *identifiers)
        stats = await self._limiter.get_window_stats(item, *identifiers)
        reset_after = max(1, math.ceil(stats.reset_time - time.time()))
        decision = RateDecision(
            limit=item.amount, remaining=max(0, stats.remaining), reset_after_s=reset_after
        )
        if not allowed:
            raise RateLimited(
                f"rate limit of {spec} exceeded", retry_after=reset_after, limit=item.amount, remaining=0
            )
        return decision

    async def blocked_for(self, spec: str, *identifiers: str) -> int | None:
        """Seconds until ``identifiers`` may try again when their budget is spent (no hit counted);
        None while they still have budget. For lock-outs that count failures only."""
        item = parse_limit(spec)
        if await self._limiter.test(item, *identifiers):
            return None
        stats = await self._limiter.get_window_stats(item, *identifiers)
        return max(1, math.ceil(stats.reset_time - time.time()))

    async def count(self, spec: str, *identifiers: str) -> None:
        """Count one event (e.g. a failed sign-in) without refusing anything."""
        await self._limiter.hit(parse_limit(spec), *identifiers)

    async def reset(self, spec: str, *identifiers: str) -> None:
        await self._limiter.clear(parse_limit(spec), *identifiers)
