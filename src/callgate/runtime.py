"""The composition root: the services one callgate node runs with, built from :class:`Settings`.

Nothing here does work of its own: it builds the store, auth, domain, real-time and webhook services,
wires them together, and starts and stops them in order. The app (``app.py``) and the CLI use it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets

from redis.asyncio import Redis

from callgate.auth.ledger import DatabaseLedger, RedisLedger
from callgate.auth.origins import OriginIndex
from callgate.auth.ratelimit import RateLimiter
from callgate.auth.tokens import TokenLedger
from callgate.clock import Clock, SystemClock
from callgate.config import Settings
from callgate.domain import carriers, provider_credentials, tools
from callgate.domain.analysis import AnalysisWorker
from callgate.domain.keys import KeyAuthenticator
from callgate.domain.live_calls import CallRecords
from callgate.domain.recordings import recordings_from_settings
from callgate.domain.telephony import Dialer
from callgate.domain.tools import HttpTools
from callgate.domain.trunks import TrunkDirectory
from callgate.domain.twilio_calls import TwilioRecords
from callgate.errors import CallgateError
from callgate.jobs import NodeJobs
from callgate.metrics import Metrics, worker_stopped
from callgate.providers.backlog import backlog
from callgate.providers.registry import EngineRegistry
from callgate.providers.settings import use_whisper_models
from callgate.providers.threads import limit_blas_threads
from callgate.realtime import draining
from callgate.realtime.admission import Admission
from callgate.realtime.control import CallControl
from callgate.realtime.session import SessionServices
from callgate.realtime.sip_trunk.node import SipTrunk
from callgate.realtime.start import CallStarter
from callgate.realtime.twilio.outbound import TwilioDialer
from callgate.realtime.twilio.service import TwilioService
from callgate.store import sealing
from callgate.store.db import Database
from callgate.webhooks import endpoints
from callgate.webhooks.service import WebhookService, outbound_policy

log = logging.getLogger(__name__)


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
            max_sessions=-(-settings.max_sessions // settings.workers) if settings.max_sessions else None,
            max_loop_lag_ms=settings.max_loop_lag_ms,
            metrics=self.metrics,
            stt_backlog=lambda: backlog("stt"),
            max_stt_wait_ms=settings.max_stt_wait_ms,
            max_stt_queue=settings.max_stt_queue,
        )
        use_whisper_models(settings.whisper_models, default=settings.whisper_default_model)
        self.engines = EngineRegistry(
            tts_cache_bytes=settings.tts_cache_mb * 1024 * 1024, metrics=self.metrics
        )
        self.node_id = f"node_{secrets.token_hex(8)}"
        """This process's id in node leases (new at every start: a restarted node's old calls lapse)."""
        self.records = CallRecords(self.db, self.clock, node_id=self.node_id)
        self.recordings = recordings_from_settings(settings, db=self.db, clock=self.clock)
        self.http_tools = HttpTools(db=self.db, clock=self.clock, policy=outbound_policy(settings))
        self.call_starter = CallStarter(
            settings=settings,
            services=SessionServices(
                clock=self.clock,
                metrics=self.metrics,
                control=self.control,
                records=self.records,
                recordings=self.recordings,
                http_tools=self.http_tools,
            ),
            engines=self.engines,
            admission=self.admission,
            ledger=self.ledger,
        )
        self.twilio = TwilioService(
            starter=self.call_starter, records=TwilioRecords(self.db, self.clock), settings=settings
        )
        self.webhooks = WebhookService(settings=settings, db=self.db, clock=self.clock)
        self.analysis = AnalysisWorker(
            db=self.db,
            clock=self.clock,
            llm_for=lambda agent: self.engines.llm(agent.llm),
            retry_s=settings.webhooks_backoff_base_s * 6,
            concurrency=settings.analysis_concurrency,
            poll_s=settings.webhooks_poll_interval_s,
        )
        self.jobs = NodeJobs(
            records=self.records,
            control=self.control,
            admission=self.admission,
            ledger=self.ledger,
            metrics=self.metrics,
            clock=self.clock,
            sweep_interval_s=settings.sweep_interval_s,
            lease_s=settings.node_lease_s,
        )
        self.twilio_dialer = TwilioDialer(self.twilio)
        self.dialers: dict[str, Dialer] = {"twilio": self.twilio_dialer}
        """Who places phone calls through a carrier, by carrier kind (``POST /v1/phone-calls``)."""
        self.sip_trunk: SipTrunk | None = None
        if settings.sip_listen_address is not None:  # off unless CALLGATE_SIP_LISTEN is set
            directory = TrunkDirectory(self.db, self.clock, join_deadline_s=settings.join_deadline_s)
            self.sip_trunk = self.dialers["sip"] = SipTrunk(starter=self.call_starter, directory=directory)
        self._warm_up: asyncio.Task[object] | None = None

    @property
    def signing_key(self) -> str:
        return self.settings.signing_key

    async def start(self) -> None:
        limit_blas_threads()
        await self.db.start()
        sealed = await self.db.write(endpoints.seal_stored_secrets)
        sealed += await self.db.write(carriers.seal_stored_secrets)
        sealed += await self.db.write(provider_credentials.seal_stored_secrets)
        sealed += await self.db.write(tools.seal_stored_secrets)
        if sealed:
            log.info("sealed %d stored secrets (in plain text or under an old key)", sealed)
        await self.control.start()
        if self.settings.webhooks_dispatch:  # every node may drain the outbox and run analyses
            await self.webhooks.start()
            await self.analysis.start()
        await self.jobs.start()
        if self.sip_trunk is not None and self.settings.sip_listen_address is not None:
            await self.sip_trunk.start(*self.settings.sip_listen_address)
        if self.settings.speech_warmup:
            self._warm_up = asyncio.create_task(asyncio.to_thread(self.engines.warm_up), name="warm-up")

    async def drain(self) -> list[str]:
        """Stop taking calls and let live ones finish (``CALLGATE_DRAIN_TIMEOUT_S``); see
        :mod:`callgate.realtime.draining`. The ids of the calls that had to be ended."""
        return await draining.drain(
            admission=self.admission,
            control=self.control,
            timeout_s=self.settings.drain_timeout_s,
        )

    async def stop(self) -> None:
        if self.sip_trunk is not None:  # first: its calls end while the store still runs
            await self.sip_trunk.close()
        if self._warm_up is not None:
            self._warm_up.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._warm_up
        await self.jobs.stop()
        await self.twilio_dialer.aclose()
        with contextlib.suppress(CallgateError):  # a node that cannot reach its database lets it lapse
            await self.jobs.release_lease()
        await self.analysis.stop()
        await self.webhooks.stop()
        await self.control.stop()
        await self.engines.aclose()
        await self.http_tools.aclose()
        await self.db.close()
        if self.redis is not None:
            await self.redis.aclose()
        worker_stopped()
