"""Admission control: a node refuses new calls before it is too busy to serve the ones it has.

A real-time node fails badly when overloaded: every call's audio comes late at once, caller audio is
dropped, and joining takes seconds. So before a caller joins (WebSocket, WebRTC offer, SIP INVITE) the
node checks three things, and a refused caller is told to try again (WebSocket close 1013, HTTP 503 and
SIP 503 with ``Retry-After``); the call is untouched and its token stays valid, so a client can retry
or a load balancer can send it elsewhere:

* ``max_sessions``: a hard cap on live sessions (``CALLGATE_MAX_SESSIONS``; unset: none);
* the event loop's lag: a task sleeps 100 ms again and again and measures how late it wakes
  (smoothed). Above ``max_loop_lag_ms`` (``CALLGATE_MAX_LOOP_LAG_MS``, 250; 0: off) the loop is
  saturated: more calls would make every call late;
* the embedded speech-to-text's backlog, sampled on the same probe: how long the oldest utterance has
  waited for a transcript (smoothed like the lag) above ``max_stt_wait_ms``
  (``CALLGATE_MAX_STT_WAIT_MS``, 1000; 0: off), or more utterances waiting than ``max_stt_queue``
  (``CALLGATE_MAX_STT_QUEUE``; 0: off). Callers who talk cost far more than the event loop shows: the
  loop stays idle while transcripts fall seconds behind, so a node full of talkers must say no here.

The lag is exported as ``callgate_event_loop_lag_seconds``, the backlog as ``callgate_stt_queue_depth``
and ``callgate_stt_oldest_wait_seconds``, refusals as ``callgate_sessions_refused_total{reason}``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from prometheus_client import Counter, Gauge

from callgate.metrics import Metrics
from callgate.providers.backlog import Backlog

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
        metrics: Metrics,
        stt_backlog: Callable[[], Backlog] = Backlog,
        max_stt_wait_ms: int = 0,
        max_stt_queue: int = 0,
    ) -> None:
        self._live = live_sessions
        self.max_sessions = max_sessions
        self.max_loop_lag_s = max_loop_lag_ms / 1000
        self.loop_lag_s = 0.0
        """Smoothed lateness of the event loop, in seconds."""
        self._stt_backlog = stt_backlog
        self.max_stt_wait_s = max_stt_wait_ms / 1000
        self.max_stt_queue = max_stt_queue
        self.stt_wait_s = 0.0
        """Smoothed wait of the oldest utterance for speech-to-text, in seconds."""
        self.stt_depth = 0
        """Utterances waiting for speech-to-text at the last probe."""
        self._metrics = metrics
        registry = metrics.registry
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
        elif (self.max_stt_wait_s and self.stt_wait_s > self.max_stt_wait_s) or (
            self.max_stt_queue and self.stt_depth > self.max_stt_queue
        ):
            reason, detail = "stt_backlog", "this node's speech recognition is busy"
        else:
            return None
        self._refused.labels(reason=reason).inc()
        return f"{detail}; try again in a few seconds"

    def observe(self, lag_s: float) -> None:
        self.loop_lag_s += SMOOTHING * (max(0.0, lag_s) - self.loop_lag_s)
        self._lag_gauge.set(self.loop_lag_s)

    def observe_stt(self, backlog: Backlog) -> None:
        self.stt_depth = backlog.depth
        self.stt_wait_s += SMOOTHING * (backlog.oldest_s - self.stt_wait_s)
        self._metrics.stt_queue_depth.set(backlog.depth)
        self._metrics.stt_oldest_wait.set(backlog.oldest_s)

    async def watch_loop(self) -> None:
        """Measure the loop's lag and the speech-to-text backlog forever (a task of the runtime)."""
        while True:
            started = time.monotonic()
            await asyncio.sleep(PROBE_S)
            self.observe(time.monotonic() - started - PROBE_S)
            self.observe_stt(self._stt_backlog())
