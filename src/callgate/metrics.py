"""The node's Prometheus metrics: one registry per node (per :class:`~callgate.runtime.Runtime`), so
several nodes in one test process do not mix their figures. ``GET /metrics`` exports :func:`exposition`.

``callgate serve --workers N`` runs N processes as one node: it sets ``PROMETHEUS_MULTIPROC_DIR`` before
the workers start, every worker writes its figures there, and whichever worker answers ``/metrics``
reports the node's total (counters and histograms summed, gauges by their ``multiprocess_mode``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"
__all__ = ["CONTENT_TYPE_LATEST", "Metrics", "STTObserver", "exposition", "worker_stopped"]

STTObserver = Callable[[str, float], None]
"""Told of each utterance an embedded STT transcribed: how (its ``path``), and the seconds it took."""


def exposition(registry: CollectorRegistry) -> bytes:
    """The text exposition of this node: its workers' figures together when there are several."""
    if os.environ.get(MULTIPROC_DIR):
        merged = CollectorRegistry()
        multiprocess.MultiProcessCollector(merged)  # type: ignore[no-untyped-call]
        return generate_latest(merged)
    return generate_latest(registry)


def worker_stopped() -> None:
    """A worker of a multi-process node stops: its live gauges no longer count."""
    if os.environ.get(MULTIPROC_DIR):
        multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]


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
        self.sessions_started = Counter(
            "callgate_sessions_started", "Call sessions started, by transport", ["transport"], registry=r
        )
        self.live_sessions = Gauge(
            "callgate_live_sessions",
            "Live call sessions on this node",
            registry=r,
            multiprocess_mode="livesum",
        )
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
        self.turns_taken_back = Counter(
            "callgate_turns_taken_back",
            "Answers taken back because the caller went on with the turn they answered (a turn ended early)",
            registry=r,
        )
        self.reminders = Counter(
            "callgate_reminders",
            "Reminders the agent said because the line was quiet (an agent's reminder_after_s)",
            registry=r,
        )
        self.caller_rtp_packets = Counter(
            "callgate_caller_rtp_packets",
            "Caller RTP packets received (WebRTC, SIP)",
            labelnames=("transport",),
            registry=r,
        )
        self.caller_rtp_lost = Counter(
            "callgate_caller_rtp_lost_packets",
            "Caller RTP packets that never arrived in time",
            labelnames=("transport",),
            registry=r,
        )
        self.caller_concealed_seconds = Counter(
            "callgate_caller_audio_concealed_seconds",
            "Caller audio filled with silence for lost or undecodable packets",
            labelnames=("transport",),
            registry=r,
        )
        self.caller_paused_seconds = Counter(
            "callgate_caller_audio_paused_seconds",
            "Time callers' senders paused with no packet missing (Opus DTX, silence suppression)",
            labelnames=("transport",),
            registry=r,
        )
        self.stt_queue_depth = Gauge(
            "callgate_stt_queue_depth",
            "Caller utterances waiting for the embedded speech-to-text or being transcribed",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.stt_oldest_wait = Gauge(
            "callgate_stt_oldest_wait_seconds",
            "How long the oldest utterance waiting for the embedded speech-to-text has waited so far",
            registry=r,
            multiprocess_mode="livemax",
        )
        self.stt_transcripts = Counter(
            "callgate_stt_transcripts",
            "Utterances transcribed by the embedded speech-to-text, by how: whisper's short window, its "
            "retry in retry_window_s, its fallback to the 30 s window, or the 30 s window alone",
            ["engine", "model", "path"],
            registry=r,
        )
        self.stt_seconds = Histogram(
            "callgate_stt_transcribe_seconds",
            "Time from an utterance handed to the embedded speech-to-text to its transcript, waiting "
            "for the model included",
            ["engine", "model", "path"],
            registry=r,
            buckets=(0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2.5, 5),
        )
        self.session_max_output_lag = Histogram(
            "callgate_session_max_output_lag_seconds",
            "Each session's largest output-frame lag",
            registry=r,
            buckets=(0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28),
        )

    def stt_observer(self, engine: str, model: str) -> STTObserver:
        """What an embedded STT engine calls after each transcript (see :data:`STTObserver`)."""

        def observe(path: str, seconds: float) -> None:
            self.stt_transcripts.labels(engine, model, path).inc()
            self.stt_seconds.labels(engine, model, path).observe(seconds)

        return observe
