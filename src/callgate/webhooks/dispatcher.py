"""The dispatcher: drains the outbox on every node, with timeouts, backoff with jitter, and a bound.

Each loop claims a batch of due deliveries (:func:`callgate.webhooks.deliveries.claim`), sends them
concurrently through the outbound guard, and records each attempt. A failed attempt (no answer in
time, a refused address, or a non-2xx status) is retried after ``base * 2**(n-1)`` seconds (capped,
halved at random: "equal jitter"; a ``Retry-After`` answer is honoured up to the cap); after
``max_attempts`` the delivery is ``dead``. Nothing is kept in memory between loops, so a node that
stops (or dies) mid-delivery leaves its claims to the next node once their lease runs out. What a
request looks like for each HTTP method (``GET`` carries query parameters) is :mod:`callgate.webhooks.wire`.

Owned by :class:`callgate.runtime.Runtime`: :meth:`start` / :meth:`stop`.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from callgate.clock import Clock
from callgate.errors import CallgateError
from callgate.net_guard import OutboundPolicy, OutboundRefused, guarded_client
from callgate.store.db import Database
from callgate.webhooks import deliveries, wire
from callgate.webhooks.deliveries import AttemptResult, Claimed
from callgate.webhooks.signing import UnusableSecret, signed_headers

__all__ = ["Dispatcher", "RetryPolicy"]

log = logging.getLogger(__name__)

EXCERPT_CHARS = 1000
USER_AGENT = "callgate-webhooks/1"


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    timeout_s: float = 10.0
    max_attempts: int = 8
    base_s: float = 5.0
    max_s: float = 3600.0
    lease_s: float = 60.0
    """How long a claim holds a delivery: longer than an attempt plus its write can take. A node that
    dies mid-delivery delays that delivery by up to this much."""

    def __post_init__(self) -> None:
        if self.lease_s <= self.timeout_s:
            raise ValueError("the lease must be longer than the attempt timeout")

    def delay(
        self, attempt: int, *, retry_after_s: float | None = None, rng: random.Random | None = None
    ) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        if retry_after_s is not None:
            return min(max(retry_after_s, 0.0), self.max_s)
        ceiling = min(self.max_s, self.base_s * 2.0 ** (attempt - 1))
        return ceiling / 2 + (rng or random).uniform(0, ceiling / 2)


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if not value or response.status_code not in (429, 503):
        return None
    if value.strip().isdigit():
        return float(value)
    with contextlib.suppress(TypeError, ValueError):
        when = email.utils.parsedate_to_datetime(value)
        return max((when - datetime.now(UTC)).total_seconds(), 0.0)
    return None


class Dispatcher:
    """Sends due deliveries until stopped. ``run_once`` does one claim-and-send round (for tests)."""

    def __init__(
        self,
        *,
        db: Database,
        clock: Clock,
        policy: OutboundPolicy,
        retry: RetryPolicy,
        poll_interval_s: float = 0.25,
        batch_size: int = 64,
        concurrency: int = 32,
    ) -> None:
        self._db = db
        self._clock = clock
        self._policy = policy
        self.retry = retry
        self._poll_s = poll_interval_s
        self._batch = batch_size
        self._sem = asyncio.Semaphore(concurrency)
        self._client: httpx.AsyncClient | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._stopping = False

    async def start(self) -> None:
        if self._task is None:
            self._client = guarded_client(
                self._policy, timeout=self.retry.timeout_s, headers={"user-agent": USER_AGENT}
            )
            self._task = asyncio.create_task(self._loop(), name="webhook-dispatcher")

    async def stop(self) -> None:
        """Claim nothing more and let the attempts in flight finish (within one request timeout), so a
        node stopped on purpose does not leave receivers a duplicate; then stop. An attempt still
        running after that is abandoned to its lease and retried later (receivers dedupe on
        ``webhook-id``)."""
        if self._task is not None:
            self._stopping = True
            self._wake.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._task), self.retry.timeout_s + 1)
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
            self._stopping = False
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def wake(self) -> None:
        """Look for due deliveries now rather than at the next poll."""
        self._wake.set()

    async def _loop(self) -> None:
        while not self._stopping:
            try:
                sent = await self.run_once()
            except CallgateError:
                log.warning("webhook dispatch round failed; will retry", exc_info=True)
                sent = 0
            if sent < self._batch and not self._stopping:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._poll_s)

    async def run_once(self) -> int:
        """Claim one batch and send it; returns how many attempts were made."""
        now = self._clock.now()
        # A read first: an idle outbox costs no write transaction (SQLite's writer lock stays free).
        if not await self._db_read(lambda s: deliveries.any_due(s, now=now)):
            return 0
        # The time is read when the claim runs, not when it was queued: a lease counted from a
        # moment spent waiting for the writer could expire before the attempt even starts.
        batch = await self._db.write(
            lambda s: deliveries.claim(
                s, now=self._clock.now(), limit=self._batch, lease_s=self.retry.lease_s
            )
        )
        if not batch:
            return 0
        results = await asyncio.gather(*(self._bounded_attempt(item) for item in batch))
        delays = [
            self.retry.delay(i.number, retry_after_s=r.retry_after_s)
            for i, r in zip(batch, results, strict=True)
        ]
        # One write records the whole batch: far cheaper than a transaction step per attempt.
        statuses = await self._db.write(
            lambda s: deliveries.complete(
                s,
                results=list(zip(batch, results, delays, strict=True)),
                now=self._clock.now(),
                max_attempts=self.retry.max_attempts,
            )
        )
        for item, result, status in zip(batch, results, statuses, strict=True):
            log.info(
                "webhook %s attempt %d -> %s (%s)",
                item.id,
                item.number,
                result.status_code or result.error,
                status,
                extra={"delivery": item.id, "url": item.url},
            )
        return len(batch)

    async def _db_read(self, job: Callable[[AsyncSession], Awaitable[bool]]) -> bool:
        async with self._db.read() as session:
            return await job(session)

    async def _bounded_attempt(self, item: Claimed) -> AttemptResult:
        async with self._sem:
            return await self._attempt(item)

    async def _attempt(self, item: Claimed) -> AttemptResult:
        assert self._client is not None, "the dispatcher is not started"
        started_at = self._clock.now()
        request = wire.prepare(
            method=item.method, url=item.url, body=item.body, content_type=item.content_type
        )
        try:
            headers = signed_headers(
                message_id=item.message_id,
                body=request.signed,
                secrets_=item.secrets.active(started_at),
                timestamp=started_at,
            )
        except UnusableSecret as exc:
            return self._failed(started_at, time.perf_counter(), str(exc))
        if request.content_type is not None:
            headers["content-type"] = request.content_type
        t0 = time.perf_counter()
        try:
            async with asyncio.timeout(self.retry.timeout_s):
                status, excerpt, retry_after = await self._send(request, headers)
        except OutboundRefused as exc:
            return self._failed(started_at, t0, f"refused: {exc.detail}")
        except (TimeoutError, httpx.TimeoutException):
            return self._failed(started_at, t0, f"no answer within {self.retry.timeout_s:g} s")
        except httpx.HTTPError as exc:
            return self._failed(started_at, t0, f"{type(exc).__name__}: {exc}")
        return AttemptResult(
            started_at=started_at,
            duration_ms=round((time.perf_counter() - t0) * 1000),
            status_code=status,
            error=None if 200 <= status < 300 else f"HTTP {status}",
            excerpt=excerpt,
            retry_after_s=retry_after,
        )

    async def _send(
        self, request: wire.WireRequest, headers: dict[str, str]
    ) -> tuple[int, str | None, float | None]:
        """One request; reads at most :data:`EXCERPT_CHARS` bytes of the answer."""
        assert self._client is not None
        async with self._client.stream(
            request.method, request.url, content=request.content, headers=headers
        ) as response:
            head = bytearray()
            async for chunk in response.aiter_bytes():
                head += chunk
                if len(head) >= EXCERPT_CHARS:
                    break
            excerpt = head[:EXCERPT_CHARS].decode(errors="replace") if head else None
            return response.status_code, excerpt, _retry_after(response)

    @staticmethod
    def _failed(started_at: datetime, t0: float, error: str) -> AttemptResult:
        duration = round((time.perf_counter() - t0) * 1000)
        return AttemptResult(started_at, duration, None, error, None)
