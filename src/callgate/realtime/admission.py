"""Admission control: a node refuses new calls before it is too busy to serve the ones it has.

A real-time node fails badly when overloaded: every call's audio comes late at once, caller audio is
dropped, and joining takes seconds. So before a caller joins (WebSocket, WebRTC offer, SIP INVITE) the
node checks two things, and a refused caller is told to try again (WebSocket close 1013, HTTP 503 and
SIP 503 with ``Retry-After``); the call is untouched and its token stays valid, so a client can retry
or a load balancer can send it elsewhere:

* ``max_sessions``: a hard cap on live sessions (``CALLGATE_MAX_SESSIONS``; unset: none);
* the event loop's lag: a task sleeps 100 ms again and again and measures how late it wakes
  (smoothed). Above ``max_loop_lag_ms`` (``CALLGATE_MAX_LOOP_LAG_MS``, 250; 0: off) the loop is
  saturated: more calls would make every call late.

The lag is exported as ``callgate_event_loop_lag_seconds``, refusals as
``callgate_sessions_refused_total{reason}``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge

__all__ = ["Admission"]

PROBE_S = 0.1
SMOOTHING = 0.3
"""Weight of the newest lag sample: a lag must last a few probes (not one GC pause) to refuse calls."""
RETRY_AFTER_S = 5


class Admission:
    def __init__(
        self,
        *,
        live_sessions: Callable[[], int],
        max_sessions: int | None,
        max_loop_lag_ms: int,
        registry: CollectorRegistry,
    ) -> None:
        self._live = live_sessions
        self.max_sessions = max_sessions
        self.max_loop_lag_s = max_loop_lag_ms / 1000
        self.loop_lag_s = 0.0
        """Smoothed lateness of the event loop, in seconds."""
        self.draining = False
        """The node is shutting down: live calls may finish, no new caller joins."""
        self._lag_gauge = Gauge(
            "callgate_event_loop_lag_seconds",
            "Smoothed event-loop lag of this node (its most lagging worker)",
            registry=registry,
            multiprocess_mode="livemax",
        )
        self._refused = Counter(
            "callgate_sessions_refused", "Callers refused by admission control", ["reason"], registry=registry
        )

    def refusal(self) -> str | None:
        """Why a new caller must not join now, or None to let them in."""
        if self.draining:
            reason, detail = "draining", "this node is shutting down"
        elif self.max_sessions is not None and self._live() >= self.max_sessions:
            reason, detail = "max_sessions", f"this node serves its maximum of {self.max_sessions} calls"
        elif self.max_loop_lag_s and self.loop_lag_s > self.max_loop_lag_s:
            reason, detail = "overloaded", "this node is overloaded"
        else:
            return None
        self._refused.labels(reason=reason).inc()
        return f"{detail}; try again in a few seconds"

    def observe(self, lag_s: float) -> None:
        self.loop_lag_s += SMOOTHING * (max(0.0, lag_s) - self.loop_lag_s)
        self._lag_gauge.set(self.loop_lag_s)

    async def watch_loop(self) -> None:
        """Measure the loop's lag forever (a task of the runtime)."""
        while True:
            started = time.monotonic()
            await asyncio.sleep(PROBE_S)
            self.observe(time.monotonic() - started - PROBE_S)
