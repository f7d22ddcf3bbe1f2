"""What one node runs for events: the webhook dispatcher (post-call analyses run in
:class:`callgate.domain.analysis.AnalysisWorker`, which the runtime starts beside it).

:class:`callgate.runtime.Runtime` builds one :class:`WebhookService` from its settings, starts it after
the database and stops it before. Every node may run it (``CALLGATE_WEBHOOKS_DISPATCH``, on by default):
the outbox is drained safely by any number of them.
"""

from __future__ import annotations

import logging

from callgate.clock import Clock
from callgate.config import Settings
from callgate.net_guard import OutboundPolicy
from callgate.store.db import Database
from callgate.webhooks.dispatcher import Dispatcher, RetryPolicy

__all__ = ["WebhookService", "outbound_policy"]

log = logging.getLogger(__name__)


def outbound_policy(settings: Settings) -> OutboundPolicy:
    """The guard for every outbound request agents make, from the settings."""
    return OutboundPolicy.of(
        allow_private=settings.webhooks_allow_private, allowed_networks=settings.webhooks_allowed_networks
    )


class WebhookService:
    def __init__(self, *, settings: Settings, db: Database, clock: Clock) -> None:
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

    async def start(self) -> None:
        await self.dispatcher.start()

    async def stop(self) -> None:
        await self.dispatcher.stop()
