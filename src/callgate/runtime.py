"""The process-wide services one callgate node runs with, built from :class:`Settings`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from redis.asyncio import Redis
from sqlalchemy import select

from callgate.auth.ledger import DatabaseLedger, RedisLedger
from callgate.auth.origins import OriginIndex
from callgate.auth.ratelimit import RateLimiter
from callgate.auth.tokens import TokenLedger
from callgate.clock import Clock, SystemClock
from callgate.config import Settings
from callgate.domain import calls
from callgate.domain.keys import KeyAuthenticator
from callgate.domain.lifecycle import CallStatus, EndReason
from callgate.errors import CallgateError
from callgate.providers.registry import EngineRegistry
from callgate.realtime.admission import Admission
from callgate.realtime.control import CallControl
from callgate.store import sealing
from callgate.store.db import Database
from callgate.store.models import Call
from callgate.webhooks import endpoints
from callgate.webhooks.service import WebhookService

log = logging.getLogger(__name__)

LIVE_CALL_CHECK_S = 2.0
"""An end written where this node could not be signalled reaches its session within this time."""


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.http_requests = Counter(
            "callgate_http_requests", "HTTP requests", ["method", "route", "status"], registry=r
        )
        self.http_latency = Histogram(
            "callgate_http_request_seconds",
            "HTTP request latency",
            ["route"],
            registry=r,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
        )
        self.calls_created = Counter("callgate_calls_created", "Calls created", ["transport"], registry=r)
        self.calls_ended = Counter("callgate_calls_ended", "Calls ended", ["reason"], registry=r)
        self.live_sessions = Gauge("callgate_live_sessions", "Live call sessions on this node", registry=r)
        self.rate_limited = Counter("callgate_rate_limited", "Requests refused by rate limits", registry=r)
        self.output_frames = Counter("callgate_output_frames", "Agent audio frames sent", registry=r)
        self.late_output_frames = Counter(
            "callgate_output_frames_late", "Agent audio frames sent over 40 ms after their slot", registry=r
        )
        self.input_dropped_seconds = Counter(
            "callgate_input_dropped_seconds",
            "Caller audio dropped because a pipeline fell behind",
            registry=r,
        )
        self.interruptions = Counter("callgate_interruptions", "Barge-ins", registry=r)
        self.session_max_output_lag = Histogram(
            "callgate_session_max_output_lag_seconds",
            "Each session's largest output-frame lag",
            registry=r,
            buckets=(0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28),
        )


class Runtime:
    def __init__(self, settings: Settings, *, clock: Clock | None = None) -> None:
        self.settings = settings
        self.clock: Clock = clock or SystemClock()
        for previous in settings.previous_secret_keys:  # they still open what they sealed
            sealing.install(previous.get_secret_value())
        sealing.install(settings.signing_key)  # webhook signing secrets are sealed with it
        self.db = Database(settings.resolved_database_url)
        self.redis: Redis | None = Redis.from_url(settings.redis_url) if settings.redis_url else None
        self.limiter = RateLimiter(redis=self.redis)
        self.keys = KeyAuthenticator(self.db, cache_ttl_s=settings.key_cache_ttl_s)
        self.ledger: TokenLedger = (
            RedisLedger(self.redis, self.clock)
            if self.redis is not None
            else DatabaseLedger(self.db, self.clock)
        )
        self.metrics = Metrics()
        self.origins = OriginIndex(self.db, ttl_s=settings.key_cache_ttl_s)
        self.control = CallControl(self.redis)
        self.admission = Admission(
            live_sessions=lambda: self.control.live_count,
            max_sessions=settings.max_sessions,
            max_loop_lag_ms=settings.max_loop_lag_ms,
            registry=self.metrics.registry,
        )
        self.engines = EngineRegistry(tts_cache_bytes=settings.tts_cache_mb * 1024 * 1024)
        self.webhooks = WebhookService(
            settings=settings, db=self.db, clock=self.clock, llm_for=lambda agent: self.engines.llm(agent.llm)
        )
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def signing_key(self) -> str:
        return self.settings.signing_key

    async def start(self) -> None:
        await self.db.start()
        sealed = await self.db.write(endpoints.seal_stored_secrets)
        if sealed:
            log.info("sealed %d webhook signing secrets (stored in plain text or under an old key)", sealed)
        await self.control.start()
        await self.webhooks.start()
        self._tasks.append(asyncio.create_task(self._sweep_forever(), name="join-deadline-sweeper"))
        self._tasks.append(asyncio.create_task(self._watch_live_calls(), name="live-call-watch"))
        self._tasks.append(asyncio.create_task(self.admission.watch_loop(), name="loop-lag-watch"))
        if self.settings.speech_warmup:
            self._tasks.append(asyncio.create_task(self._warm_up(), name="speech-warm-up"))

    async def _warm_up(self) -> None:
        await asyncio.to_thread(self.engines.warm_up)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        await self.webhooks.stop()
        await self.control.stop()
        await self.engines.aclose()
        await self.db.close()
        if self.redis is not None:
            await self.redis.aclose()

    async def sweep_once(self) -> list[str]:
        now = self.clock.now()
        failed = await self.db.write(lambda s: calls.sweep_missed_joins(s, now=now))
        if isinstance(self.ledger, DatabaseLedger):
            await self.ledger.purge(before=now)
        for _ in failed:
            self.metrics.calls_ended.labels(reason="join_deadline_missed").inc()
        return failed

    async def check_live_calls(self) -> int:
        """End this node's sessions whose call was ended elsewhere (another node without Redis, a
        direct database change). One query per node, whatever the number of live calls."""
        live = self.control.live_call_ids
        if not live:
            return 0
        async with self.db.read() as session:
            rows = (
                await session.execute(
                    select(Call.id, Call.end_reason).where(
                        Call.id.in_(live), Call.status.in_((CallStatus.ENDED.value, CallStatus.FAILED.value))
                    )
                )
            ).all()
        for call_id, reason in rows:
            await self.control.deliver_end(call_id, EndReason(reason) if reason else EndReason.API_REQUEST)
        return len(rows)

    async def _watch_live_calls(self) -> None:
        while True:
            await asyncio.sleep(LIVE_CALL_CHECK_S)
            try:
                await self.check_live_calls()
            except CallgateError:
                log.warning("live-call check failed; will retry", exc_info=True)

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.sweep_interval_s)
            try:
                await self.sweep_once()
            except CallgateError:
                log.warning("join-deadline sweep failed; will retry", exc_info=True)
