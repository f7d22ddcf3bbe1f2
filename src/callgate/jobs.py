"""The background jobs one node runs: its lease heartbeat, the sweep (calls nobody joined in time, calls
whose node was lost), the live-call watch and the event-loop lag watch. :class:`callgate.runtime.Runtime`
starts them after the database and stops them first.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from callgate.auth.ledger import DatabaseLedger
from callgate.auth.tokens import TokenLedger
from callgate.clock import Clock
from callgate.domain.live_calls import CallRecords
from callgate.errors import CallgateError
from callgate.metrics import Metrics
from callgate.realtime.admission import Admission
from callgate.realtime.control import CallControl

log = logging.getLogger(__name__)

LIVE_CALL_CHECK_S = 2.0
"""An end written where this node could not be signalled reaches its session within this time."""


class NodeJobs:
    def __init__(
        self,
        *,
        records: CallRecords,
        control: CallControl,
        admission: Admission,
        ledger: TokenLedger,
        metrics: Metrics,
        clock: Clock,
        sweep_interval_s: float,
        lease_s: float,
    ) -> None:
        self._records = records
        self._control = control
        self._admission = admission
        self._ledger = ledger
        self._metrics = metrics
        self._clock = clock
        self._sweep_interval_s = sweep_interval_s
        self._lease_s = lease_s
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Take this node's lease, end calls of nodes already lost, then run the jobs."""
        await self.renew_lease()
        await self.sweep_once()
        self._tasks = [
            asyncio.create_task(self._every(self._lease_s / 3, self.renew_lease), name="node-lease"),
            asyncio.create_task(self._every(self._sweep_interval_s, self.sweep_once), name="join-sweep"),
            asyncio.create_task(
                self._every(LIVE_CALL_CHECK_S, self.check_live_calls), name="live-call-watch"
            ),
            asyncio.create_task(self._admission.watch_loop(), name="loop-lag-watch"),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()

    async def release_lease(self) -> None:
        """At a clean stop, after the node's sessions ended: other nodes need not wait for the lease."""
        await self._records.release_lease()

    async def renew_lease(self) -> None:
        await self._records.renew_lease(self._lease_s)

    async def sweep_once(self) -> list[str]:
        """Fail calls nobody joined before their deadline, end calls whose node's lease lapsed (and
        forget expired used tokens). The ids of the calls ended."""
        missed = await self._records.sweep_missed_joins()
        lost = await self._records.end_orphaned_calls()
        if isinstance(self._ledger, DatabaseLedger):
            await self._ledger.purge(before=self._clock.now())
        for reason, ended in (("join_deadline_missed", missed), ("node_lost", lost)):
            if ended:
                self._metrics.calls_ended.labels(reason=reason).inc(len(ended))
        if lost:
            log.warning("ended %d calls of lost nodes: %s", len(lost), ", ".join(lost[:10]))
        return missed + lost

    async def check_live_calls(self) -> int:
        """End this node's sessions whose call was ended elsewhere (another node without Redis, a
        direct database change). One query per node, whatever the number of live calls."""
        ended = await self._records.ended_among(self._control.live_call_ids)
        for call_id, reason in ended:
            await self._control.deliver_end(call_id, reason)
        return len(ended)

    @staticmethod
    async def _every(interval_s: float, job: Callable[[], Awaitable[object]]) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                await job()
            except CallgateError:
                log.warning(
                    "background job %s failed; will retry", getattr(job, "__name__", job), exc_info=True
                )
