"""A virtual clock: time moves only when a test advances it.

``sleep()`` waits on virtual time, so a test can play minutes of a call in milliseconds and assert exact
timings. :meth:`VirtualClock.advance` releases sleepers in time order and lets the event loop run every
ready callback between steps, so each task sees a consistent "now" (as in LiveKit Agents' tests).
Only for code that takes its time from the injected clock; real ``asyncio.sleep`` timeouts are not
affected.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

_EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


class VirtualClock:
    def __init__(self, *, start: datetime = _EPOCH) -> None:
        self._start_wall = start
        self._t = 0.0
        self._timers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def now(self) -> datetime:
        return self._start_wall + timedelta(seconds=self._t)

    def monotonic(self) -> float:
        return self._t

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._timers, (self._t + seconds, next(self._seq), future))
        await future

    @property
    def pending_sleepers(self) -> int:
        return sum(1 for _, _, f in self._timers if not f.done())

    async def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds``, waking every sleeper due on the way, in order."""
        if seconds < 0:
            raise ValueError("time does not go backwards")
        target = self._t + seconds
        await settle()
        while self._timers and self._timers[0][0] <= target + 1e-9:
            due, _, future = heapq.heappop(self._timers)
            if future.done():  # cancelled sleep
                continue
            self._t = max(self._t, due)
            future.set_result(None)
            await settle()
        self._t = max(self._t, target)
        await settle()

    async def run_until(
        self, predicate: Callable[[], bool], *, within: float = 30.0, step: float = 0.005
    ) -> float:
        """Advance in ``step`` increments until ``predicate()`` holds; return the virtual time.
        Raises TimeoutError after ``within`` virtual seconds."""
        deadline = self._t + within
        await settle()
        while not predicate():
            if self._t >= deadline:
                raise TimeoutError(f"condition not met within {within} virtual seconds")
            await self.advance(step)
        return self._t


async def settle(max_rounds: int = 10_000) -> None:
    """Let the event loop run until no callback is ready (every task is waiting on something)."""
    loop = asyncio.get_running_loop()
    idle = 0
    for _ in range(max_rounds):
        await asyncio.sleep(0)
        ready = getattr(loop, "_ready", None)  # CPython's ready queue; absent on other loops
        if ready is None:
            idle += 1
            if idle > 50:
                return
        elif not ready:
            idle += 1
            if idle >= 2:
                return
        else:
            idle = 0
