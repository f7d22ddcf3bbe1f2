"""What one node runs for events: the webhook dispatcher and the post-call analysis worker.

:class:`callgate.runtime.Runtime` builds one :class:`WebhookService` from its settings, starts it after
the database and stops it before. Every node may run it (``CALLGATE_WEBHOOKS_DISPATCH``, on by default):
the outbox is drained safely by any number of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from callgate.clock import Clock
from callgate.config import Settings
from callgate.domain.analysis import AnalysisWorker
from callgate.errors import CallgateError
from callgate.net_guard import OutboundPolicy
from callgate.pipeline.interfaces import LLM
from callgate.store.db import Database
from callgate.store.models import Agent
from callgate.webhooks.dispatcher import Dispatcher, RetryPolicy

__all__ = ["WebhookService", "outbound_policy"]

log = logging.getLogger(__name__)


def outbound_policy(settings: Settings) -> OutboundPolicy:
    """The guard for every outbound request agents make, from the settings."""
    return OutboundPolicy.of(
        allow_private=settings.webhooks_allow_private, allowed_networks=settings.webhooks_allowed_networks
    )


class WebhookService:
    def __init__(
        self, *, settings: Settings, db: Database, clock: Clock, llm_for: Callable[[Agent], LLM]
    ) -> None:
        self.enabled = settings.webhooks_dispatch
        self.policy = outbound_policy(settings)
        self.dispatcher = Dispatcher(
            db=db,
            clock=clock,
            policy=self.policy,
            retry=RetryPolicy(
                timeout_s=settings.webhooks_timeout_s,
                max_attempts=settings.webhooks_max_attempts,
                base_s=settings.webhooks_backoff_base_s,
                max_s=settings.webhooks_backoff_max_s,
                lease_s=settings.webhooks_lease_s,
            ),
            poll_interval_s=settings.webhooks_poll_interval_s,
        )
        self.analysis = AnalysisWorker(
            db=db, clock=clock, llm_for=llm_for, retry_s=settings.webhooks_backoff_base_s * 6
        )
        self._poll_s = settings.webhooks_poll_interval_s
        self._concurrency = settings.analysis_concurrency
        self._analysis_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if not self.enabled:
            return
        await self.dispatcher.start()
        self._analysis_task = asyncio.create_task(self._analyse_forever(), name="post-call-analysis")

    async def stop(self) -> None:
        if self._analysis_task is not None:
            self._analysis_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._analysis_task
            self._analysis_task = None
        await self.dispatcher.stop()

    async def _analyse_forever(self) -> None:
        """Keep up to ``analysis_concurrency`` jobs running: an LLM that takes 20 s to summarise one
        call does not hold up the others. Jobs cut short by a stop are taken again when their lease
        ends."""
        running: set[asyncio.Task[None]] = set()
        try:
            while True:
                free = self._concurrency - len(running)
                jobs: list[tuple[str, int]] = []
                if free > 0:
                    try:
                        jobs = await self.analysis.claim(limit=free)
                    except CallgateError:
                        log.warning("could not claim analysis jobs; will retry", exc_info=True)
                for call_id, attempt in jobs:
                    running.add(asyncio.create_task(self.analysis.analyse(call_id, attempt), name="analysis"))
                if not running:
                    await asyncio.sleep(self._poll_s)
                    continue
                done, running = await asyncio.wait(
                    running, timeout=None if len(running) >= self._concurrency else self._poll_s,
                    return_when=asyncio.FIRST_COMPLETED,
                )  # fmt: skip
                for task in done:
                    if task.exception() is not None:
                        log.error("post-call analysis failed", exc_info=task.exception())
        finally:
            for task in running:
                task.cancel()
            if running:
                await asyncio.wait(running)
