"""API throughput and latency of ``POST /v1/web-calls``, on the SQLite default and on PostgreSQL, one command.

    python bench/api.py                      # ~3 min; writes "## API: create web call" in BENCHMARKS.md
    python bench/api.py --baseline REF       # also git ref REF's code ("before"), same run (~6 min)
    python bench/api.py --config sqlite      # one configuration (sqlite | postgres | all)
    python bench/api.py --quick              # 3 s per step; prints, writes nothing
    python bench/api.py --profile            # and a py-spy profile of the create path (an extra step)
    python bench/api.py --nice -10           # on a shared machine (root): server and load ahead of others

Two configurations, each in a fresh ``callgate serve`` subprocess (speech warm-up off, log level WARNING)
with a secret key of very high rate limit (``callgate keys create``) and a prompt agent:

* **SQLite** (the default, WAL) with one worker — target ≥ 500 calls/s;
* **PostgreSQL** with ``--workers 2`` — target ≥ 1,000 calls/s and p99 ≤ 50 ms at 500 calls/s. The
  benchmark starts its own throwaway cluster from the installed binaries, as the tests do
  (``tests/support/services.py``), with production durability switched back on (``fsync``,
  ``synchronous_commit``, ``full_page_writes``); its CPU is reported separately.

With ``--baseline REF`` the same steps run first on the ``src/`` of git ref ``REF`` (extracted with
``git archive`` into a temporary directory and put first on the server's ``PYTHONPATH``; the working
tree is not touched), so *before* and *after* are measured back to back on the same machine.

Steps per configuration, each after a short warm-up that is not counted:

1. ``GET /healthz`` at saturation (the no-op: same server, middleware and HTTP parsing; no key, no
   database, no token);
2. ``POST /v1/web-calls`` at saturation (closed loop, ``wrk`` with 32 connections when installed,
   otherwise the Python client below): the most calls per second the server completes. Latency here is
   mostly queueing (Little's law: 32 connections / throughput);
3. ``POST /v1/web-calls`` at fixed rates (open loop: 500/s, and the configuration's target rate):
   requests are sent on a schedule whatever the server does, and latency is measured from the
   *scheduled* send time, so a stalled server cannot hide its stall (no coordinated omission).

A created call: authenticate the key (cached), count its rate limit, check the agent and the team's
live-call cap, insert the call and its ``call.created`` event (group-committed with the other calls
waiting), sign the single-use JWT, answer 201. Calls are created with a join deadline of 10 minutes so
the join-deadline sweeper stays out of the measurement.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import re
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _server import (
    REPO,
    BenchServer,
    Machine,
    fmt_ms,
    machine_busy_seconds,
    percentile,
    process_cpu_seconds,
    tree_cpu_seconds,
    write_section,
)

SECTION = "API: create web call"
CONNECTIONS = 32
MAX_CONNECTIONS = 256
GRACE_S = 5.0
PROMPT_AGENT = {
    "name": "bench",
    "prompt": "You are a helpful assistant for {{company}}.",
    "variables": {"company": "Acme"},
}


@dataclass
class Endpoint:
    name: str
    method: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    expect: int = 200

    def raw(self, host: str) -> bytes:
        lines = [f"{self.method} {self.path} HTTP/1.1", f"Host: {host}"]
        lines += [f"{k}: {v}" for k, v in self.headers.items()]
        if self.body:
            lines.append(f"Content-Length: {len(self.body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + self.body


@dataclass
class Result:
    endpoint: str
    load: str
    seconds: float
    completed: int
    errors: int
    latencies_ms: list[float] = field(default_factory=list)
    p50_ms: float | None = None
    p99_ms: float | None = None
    server_cpu_s: float = 0.0
    """CPU the server process used during the step."""
    db_cpu_s: float = 0.0
    """CPU PostgreSQL's processes used during the step (0 for SQLite, inside the server)."""
    other_cores: float = 0.0
    """CPU used meanwhile by everything but the server and this load generator, in cores."""

    @property
    def server_ms_per_request(self) -> float:
        return self.server_cpu_s * 1000 / self.completed if self.completed else math.nan

    @property
    def throughput(self) -> float:
        return self.completed / self.seconds if self.seconds else 0.0

    def __post_init__(self) -> None:
        if self.latencies_ms and self.p50_ms is None:
            self.p50_ms = percentile(self.latencies_ms, 50)
            self.p99_ms = percentile(self.latencies_ms, 99)


# ------------------------------------------------------------------------------------ HTTP client


class _Conn(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection, one request at a time; pre-built request bytes."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.waiter: asyncio.Future[int] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self.buf[:end])
        match = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head)
        length = int(match.group(1)) if match else 0
        if len(self.buf) < end + 4 + length:
            return
        del self.buf[: end + 4 + length]
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(int(head[9:12]))

    def connection_lost(self, exc: Exception | None) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError(f"connection lost: {exc}"))

    async def request(self, raw: bytes) -> int:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(raw)
        return await self.waiter


async def _connect(host: str, port: int) -> _Conn:
    _, conn = await asyncio.get_running_loop().create_connection(_Conn, host, port)
    return conn


async def closed_loop(host: str, port: int, ep: Endpoint, *, seconds: float, connections: int) -> Result:
    raw = ep.raw(f"{host}:{port}")
    conns = [await _connect(host, port) for _ in range(connections)]
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    stop = time.perf_counter() + seconds

    async def worker(conn: _Conn) -> None:
        while (start := time.perf_counter()) < stop:
            statuses[await conn.request(raw)] += 1
            latencies.append((time.perf_counter() - start) * 1000)

    began = time.perf_counter()
    await asyncio.gather(*(worker(c) for c in conns))
    elapsed = time.perf_counter() - began
    for c in conns:
        if c.transport is not None:
            c.transport.close()
    ok = statuses[ep.expect]
    load = f"closed loop, {connections} conns (Python)"
    return Result(ep.name, load, elapsed, ok, sum(statuses.values()) - ok, latencies)


async def open_loop(host: str, port: int, ep: Endpoint, *, seconds: float, rate: float) -> Result:
    """Send ``rate`` requests/s on a fixed schedule; latency counts from the scheduled time.

    A request finding every connection busy opens another (as browsers would), up to ``MAX_CONNECTIONS``;
    past that it waits for one, and the wait counts in its latency. Requests still unanswered
    ``GRACE_S`` after the schedule ends are given up: they count as errors, and in the percentiles
    with the time they had waited (so p99 is then a lower bound).
    """
    raw = ep.raw(f"{host}:{port}")
    loop = asyncio.get_running_loop()
    idle: asyncio.Queue[_Conn] = asyncio.Queue()
    conns: list[_Conn] = []
    for _ in range(CONNECTIONS):
        conns.append(await _connect(host, port))
        idle.put_nowait(conns[-1])
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    total = int(rate * seconds)

    async def one(scheduled: float) -> None:
        if idle.empty() and len(conns) < MAX_CONNECTIONS:
            conns.append(await _connect(host, port))
            conn = conns[-1]
        else:
            conn = await idle.get()
        try:
            statuses[await conn.request(raw)] += 1
        except ConnectionError:
            statuses[0] += 1
            return
        latencies.append((loop.time() - scheduled) * 1000)
        idle.put_nowait(conn)

    tasks: dict[asyncio.Task[None], float] = {}
    began = loop.time()
    for i in range(total):
        scheduled = began + i / rate
        if (delay := scheduled - loop.time()) > 0:
            await asyncio.sleep(delay)
        tasks[asyncio.create_task(one(scheduled))] = scheduled
    _, pending = await asyncio.wait(tasks, timeout=max(0.0, began + seconds + GRACE_S - loop.time()))
    given_up = loop.time()
    for task in pending:
        task.cancel()
        latencies.append((given_up - tasks[task]) * 1000)
    await asyncio.gather(*pending, return_exceptions=True)
    elapsed = loop.time() - began
    for conn in conns:
        if conn.transport is not None:
            conn.transport.close()
    ok = statuses[ep.expect]
    load = f"open loop, {rate:,.0f}/s scheduled ({len(conns)} conns used)"
    if pending:
        load += f"; {len(pending)} unanswered after {GRACE_S:.0f} s"
    return Result(ep.name, load, elapsed, ok, total - ok, latencies)


# ------------------------------------------------------------------------------------ wrk


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _wrk_ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not match:
        raise ValueError(f"unreadable wrk latency {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def wrk(url: str, ep: Endpoint, *, seconds: float, connections: int) -> tuple[Result, str]:
    """Saturation with wrk (one thread: the server needs the other core)."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(f"wrk.method = {json.dumps(ep.method)}\n")
        script.write(f"wrk.body = {json.dumps(ep.body.decode())}\n")
        for k, v in ep.headers.items():
            script.write(f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}\n")
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{seconds:.0f}s", "--latency", "-s", script.name]
    cmd.append(url + ep.path)
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    Path(script.name).unlink()
    percentiles = {m.group(1): _wrk_ms(m.group(2)) for m in re.finditer(r"^\s+(\d+)%\s+(\S+)\s*$", out, re.M)}
    if "99" not in percentiles:
        print(f"could not read wrk's percentiles:\n{out}", file=sys.stderr)
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    seconds_run = _wrk_ms(re.search(r"requests in ([\d.]+\w+),", out).group(1)) / 1000  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = int(bad.group(1)) if bad else 0
    sock_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if sock_errors:
        errors += sum(int(x) for x in sock_errors.groups())
    result = Result(
        ep.name,
        f"closed loop, {connections} conns (wrk)",
        seconds_run,
        requests - errors,
        errors,
        p50_ms=percentiles.get("50"),
        p99_ms=percentiles.get("99"),
    )
    return result, " ".join([*cmd[:-3], "-s", "post.lua", cmd[-1]])


# ------------------------------------------------------------------------------------ profile


def start_profile(pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes] | None:
    """py-spy on the server, every thread, raw collapsed stacks; non-blocking so the server keeps pace."""
    exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(exe).exists():
        print("py-spy is not installed (pip install py-spy): no profile", file=sys.stderr)
        return None
    cmd = [exe, "record", "-p", str(pid), "-d", f"{seconds:.0f}", "-r", "100", "--nonblocking"]
    cmd += ["-f", "raw", "-t", "-o", str(out)]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


_PACKAGES = ("callgate", "sqlalchemy", "starlette", "fastapi", "uvicorn", "pydantic", "aiosqlite", "anyio")
# Frames worth listing by inclusive time (the rest are interpreter, thread and CLI scaffolding).
_INCLUSIVE = tuple(f"{p}/" for p in ("callgate", "sqlalchemy", "aiosqlite", "fastapi", "starlette"))
# Leaf frames of a thread that is waiting, not working (the event loop in epoll, idle worker threads).
_IDLE = {"Runner.run", "run_until_complete", "Condition.wait", "Queue.get", "SimpleQueue.get", "Event.wait"}


def _frame_name(frame: str) -> str:
    """``fn (path/to/module.py:123)`` → ``package/module.py:fn``."""
    match = re.match(r"(.*) \((.*?):\d+\)$", frame.strip())
    if not match:
        return frame.strip()
    fn, path = match.groups()
    parts = Path(path).parts
    for root in _PACKAGES:
        if root in parts:
            return "/".join(parts[parts.index(root) :]) + ":" + fn
    return f"{Path(path).name}:{fn}"


def summarize_profile(path: Path, *, top: int = 15) -> str:
    """Busy samples per thread, then the inclusive and self share of the busiest functions."""
    threads: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    busy = idle = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        frames = stack.split(";")
        if not count_text.isdigit() or len(frames) < 2:
            continue
        count = int(count_text)
        names = [_frame_name(f) for f in frames[1:]]
        if names[-1].rpartition(":")[2] in _IDLE:
            idle += count
            continue
        busy += count
        threads[
            "event loop" if "MainThread" in frames[0] else re.sub(r"^thread \(\d+\): ", "", frames[0])
        ] += count
        for name in set(names):
            if name.startswith(_INCLUSIVE) and not name.startswith("callgate/cli.py"):
                inclusive[name] += count
        own[names[-1]] += count
    if not busy:
        return "(no busy samples)"
    out = [f"{busy} busy samples ({idle} idle left out); by thread: "]
    out[0] += ", ".join(f"{name} {n / busy:.0%}" for name, n in threads.most_common(4))
    out += ["", "| inclusive | function |", "| ---: | --- |"]
    out += [f"| {n / busy:.1%} | `{name}` |" for name, n in inclusive.most_common(top)]
    out += ["", "| self | function |", "| ---: | --- |"]
    out += [f"| {n / busy:.1%} | `{name}` |" for name, n in own.most_common(top)]
    return "\n".join(out)


# ------------------------------------------------------------------------------------ run


@dataclass(frozen=True)
class Config:
    key: str
    database: str  # sqlite | postgresql
    workers: int
    target: float
    """Calls/s the issue asks of this configuration at saturation."""

    @property
    def title(self) -> str:
        db = "SQLite (WAL, the default)" if self.database == "sqlite" else "PostgreSQL"
        return f"{db}, `callgate serve --workers {self.workers}`"


CONFIGS = {
    "sqlite": Config("sqlite", "sqlite", 1, 500.0),
    "postgres": Config("postgres", "postgresql", 2, 1000.0),
}
P99_RATE = 500.0
"""The fixed rate whose p99 the target is about (≤ 50 ms)."""
P99_TARGET_MS = 50.0


@dataclass
class Run:
    config: Config
    code: str  # "after" (this checkout) or "before" (the baseline ref)
    results: list[Result]
    commands: list[str]
    busy: dict[str, float]
    profile: str | None = None


def _own_cpu() -> float:
    """CPU of this process and its finished children (wrk)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def _wait_until_idle(server: BenchServer, *, timeout_s: float = 120.0) -> None:
    """Let the server finish what an overloaded step left queued before the next step starts."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        before = server.cpu_seconds()
        time.sleep(0.5)
        if server.cpu_seconds() - before < 0.05:  # under 10% of a core: idle (the sweeper, metrics)
            return


def _postgres(stack: contextlib.ExitStack) -> tuple[str, Callable[[], float]]:
    """A PostgreSQL of our own (as the tests start it), with production durability switched back on;
    its URL and a function giving the CPU its processes used so far."""
    sys.path.insert(0, str(REPO))
    from tests.support.services import PostgresServer

    pg = stack.enter_context(PostgresServer())
    for setting in ("fsync", "synchronous_commit", "full_page_writes"):
        pg.execute(f"ALTER SYSTEM SET {setting} = on")
    pg.execute("SELECT pg_reload_conf()")
    url = pg.create_database("bench")
    postmaster = int((pg.dir / "data" / "postmaster.pid").read_text().split()[0])
    return url, lambda: tree_cpu_seconds(postmaster)


def run_config(config: Config, args: argparse.Namespace, *, code: str, src: Path | None) -> Run:
    env = {
        "CALLGATE_SPEECH_WARMUP": "false",
        "CALLGATE_LOG_LEVEL": "WARNING",
        "CALLGATE_JOIN_DEADLINE_S": "600",
    }
    if src is not None:
        env["PYTHONPATH"] = str(src)
    results: list[Result] = []
    commands: list[str] = []
    profile: str | None = None
    use_wrk = shutil.which("wrk") is not None and not args.no_wrk
    with contextlib.ExitStack() as stack:
        db_cpu: Callable[[], float] = lambda: 0.0  # noqa: E731 - SQLite runs inside the server
        if config.database == "postgresql":
            env["CALLGATE_DATABASE_URL"], db_cpu = _postgres(stack)
        server = stack.enter_context(BenchServer(workers=config.workers, env=env))
        if args.nice:
            # On a shared machine: run the server (and, inherited, wrk and this process) ahead of others.
            # Linux nice is per thread: every thread of the server, and this one (wrk inherits it).
            tids = [int(t.name) for pid in server.pids() for t in Path(f"/proc/{pid}/task").iterdir()]
            for tid in [*tids, os.getpid()]:
                os.setpriority(os.PRIO_PROCESS, tid, args.nice)
        agent_id = server.create_agent(PROMPT_AGENT)
        host, port = "127.0.0.1", server.port
        noop = Endpoint("GET /healthz (no-op)", "GET", "/healthz")
        create = Endpoint(
            "POST /v1/web-calls",
            "POST",
            "/v1/web-calls",
            {"Authorization": f"Bearer {server.key}", "Content-Type": "application/json"},
            json.dumps({"agent_id": agent_id}).encode(),
            expect=201,
        )
        cpu_before, db_before, wall_before = server.cpu_seconds(), db_cpu(), time.monotonic()

        def measured(step: Callable[[], Result]) -> Result:
            server_before, database_before = server.cpu_seconds(), db_cpu()
            machine_before, own_before = machine_busy_seconds(), _own_cpu()
            began = time.monotonic()
            result = step()
            elapsed = time.monotonic() - began
            result.server_cpu_s = server.cpu_seconds() - server_before
            result.db_cpu_s = db_cpu() - database_before
            ours = result.server_cpu_s + result.db_cpu_s + (_own_cpu() - own_before)
            result.other_cores = max(0.0, (machine_busy_seconds() - machine_before - ours) / elapsed)
            results.append(result)
            print(f"{config.key} {code}: {_row(result)}", flush=True)
            _wait_until_idle(server)
            return result

        def saturate(ep: Endpoint) -> Result:
            # Warm-up (not counted): key cache, page caches, lazily imported paths.
            asyncio.run(closed_loop(host, port, ep, seconds=1.0, connections=CONNECTIONS))
            if use_wrk:
                result, cmd = wrk(server.url, ep, seconds=args.seconds, connections=CONNECTIONS)
                commands.append(cmd)
                return result
            return asyncio.run(closed_loop(host, port, ep, seconds=args.seconds, connections=CONNECTIONS))

        def fixed_rate(ep: Endpoint, rate: float) -> Result:
            return asyncio.run(open_loop(host, port, ep, seconds=args.seconds, rate=rate))

        measured(partial(saturate, noop))
        measured(partial(saturate, create))
        for rate in sorted({P99_RATE, config.target}):
            measured(partial(fixed_rate, create, rate))
        busy = {
            "server_cpu_s": server.cpu_seconds() - cpu_before,
            "db_cpu_s": db_cpu() - db_before,
            "wall_s": time.monotonic() - wall_before,
        }
        if args.profile and code == "after":
            profile = _profile(server, create, args)
        busy["calls_created"] = sum(
            v for k, v in server.metrics().items() if k.startswith("callgate_calls_created_total")
        )
        if server.proc is not None and server.proc.poll() is not None:
            raise RuntimeError(f"the server died:\n{server.log_tail()}")
    return Run(config, code, results, commands, busy, profile)


def _profile(server: BenchServer, ep: Endpoint, args: argparse.Namespace) -> str | None:
    out = server.dir / "profile.txt"
    # With several workers py-spy follows the busiest so far (the others serve the same load meanwhile).
    pids = server.pids()
    worker = max(pids[1:] or pids, key=process_cpu_seconds)
    spy = start_profile(worker, args.seconds, out)
    if spy is None:
        return None
    time.sleep(0.5)  # let py-spy attach
    asyncio.run(closed_loop("127.0.0.1", server.port, ep, seconds=args.seconds, connections=CONNECTIONS))
    spy.wait(timeout=args.seconds + 60)
    profile = summarize_profile(out) if out.exists() else "(py-spy wrote nothing)"
    print("\nprofile of POST /v1/web-calls at saturation:\n" + profile, flush=True)
    return profile


def baseline_source(ref: str) -> Path:
    """``src/`` of git ref ``ref``, extracted into a temporary directory (the working tree is untouched)."""
    out = Path(tempfile.mkdtemp(prefix="callgate-bench-baseline-"))
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", ref, "src"], capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(out)], input=archive, check=True)
    return out / "src"


# ------------------------------------------------------------------------------------ report


HEADER = (
    "| code | endpoint | load | throughput (req/s) | p50 ms | p99 ms | errors | server CPU ms/req "
    "| database CPU ms/req | other load (cores) |\n"
    "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
)


def _row(r: Result, code: str = "") -> str:
    db = f"{r.db_cpu_s * 1000 / r.completed:.2f}" if r.db_cpu_s and r.completed else "-"
    return (
        f"| {code} | {r.endpoint} | {r.load} | {r.throughput:,.0f} | {fmt_ms(r.p50_ms)} | {_ms1(r.p99_ms)} "
        f"| {r.errors} | {r.server_ms_per_request:.2f} | {db} | {r.other_cores:.1f} |"
    )


def _ms1(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def verdict(run: Run) -> str:
    cfg = run.config
    saturation = next(r for r in run.results if r.endpoint.startswith("POST") and "closed" in r.load)
    at_p99_rate = next(r for r in run.results if r.load.startswith(f"open loop, {P99_RATE:,.0f}/s"))
    bound = "≥ " if "unanswered" in at_p99_rate.load else ""
    ok_rate = saturation.throughput >= cfg.target
    ok_p99 = at_p99_rate.p99_ms is not None and at_p99_rate.p99_ms <= P99_TARGET_MS and not at_p99_rate.errors
    met = ok_rate and (ok_p99 or cfg.database == "sqlite")
    aim = f"≥ {cfg.target:,.0f} calls/s" + (
        f", p99 ≤ {P99_TARGET_MS:.0f} ms at {P99_RATE:,.0f}/s" if cfg.database != "sqlite" else ""
    )
    return (
        f"{'**Target met**' if met else '**Target not met**'} ({aim}): {saturation.throughput:,.0f} "
        f"calls/s at saturation; at {P99_RATE:,.0f} calls/s scheduled, p50 {_ms1(at_p99_rate.p50_ms)} ms and "
        f"p99 {bound}{_ms1(at_p99_rate.p99_ms)} ms."
    )


def report(args: argparse.Namespace, runs: list[Run], machine: Machine, loads: tuple[float, float]) -> str:
    command = "python bench/api.py" + (f" --baseline {args.baseline}" if args.baseline else "")
    if args.nice:
        command += f" --nice {args.nice}"
    wrk_cmds = [c for run in runs for c in run.commands]
    other = max((r.other_cores for run in runs for r in run.results), default=0.0)
    lines = [
        f"Command: `{command}` (steps of {args.seconds:.0f} s"
        + (f"; saturation with `{wrk_cmds[-1]}`" if wrk_cmds else "")
        + ").",
        "",
        f"Machine: {machine.line()}. 1-minute load average {loads[0]:.2f} when the run began and "
        f"{loads[1]:.2f} when it ended (the benchmark's own load included); other work used at most "
        f"{other:.1f} cores during a step"
        + (
            " — it shared the machine, so these figures are lower than a quiet machine gives."
            if other > 0.3
            else " (a quiet machine)."
        ),
        "",
        "Each configuration runs in a fresh server (log level WARNING, speech warm-up off) and data "
        "directory; PostgreSQL is a throwaway cluster started by the benchmark with production "
        "durability (`fsync`, `synchronous_commit`, `full_page_writes` on), on the same machine. The load "
        "generator is a separate process on the same 2 cores"
        + (
            f"; *before* is commit `{args.baseline}`, run by the same command in the same session"
            if args.baseline
            else ""
        )
        + ".",
    ]
    for key in dict.fromkeys(run.config.key for run in runs):
        cfg = CONFIGS[key]
        these = [run for run in runs if run.config.key == key]
        lines += ["", f"### {cfg.title}", "", HEADER]
        lines += [_row(r, run.code) for run in these for r in run.results]
        lines.append("")
        for run in these:
            label = f"*{run.code}*: " if len(these) > 1 else ""
            busy = run.busy
            lines.append(
                f"- {label}{verdict(run)} Over the whole run the server used {busy['server_cpu_s']:.1f} s of "
                f"CPU"
                + (f" and PostgreSQL {busy['db_cpu_s']:.1f} s" if busy["db_cpu_s"] else "")
                + f" in {busy['wall_s']:.1f} s ({busy['calls_created']:,.0f} calls created)."
            )
    lines += [
        "",
        "Saturation latency is queueing (32 connections / throughput); the fixed-rate rows are the ones to "
        "read for p50/p99. Fixed-rate latency counts from each request's scheduled send time (no "
        "coordinated omission); a request still unanswered 5 s after the schedule ends is an error. "
        "*Server CPU ms/req* is the CPU of the server's processes per completed request, *database CPU* "
        "that of PostgreSQL's; *other load* is what the rest of the machine (not the server, the database "
        "or the load generator) used meanwhile, in cores of the 2.",
    ]
    profiles = [run for run in runs if run.profile]
    for run in profiles:
        lines += [
            "",
            f"Where the server's time goes creating calls at saturation, {run.config.title} (`--profile`, "
            "py-spy on one worker, 100 samples/s, non-blocking; a separate step, not one measured above):",
            "",
            run.profile or "",
        ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each measured step")
    parser.add_argument(
        "--config", choices=[*CONFIGS, "all"], default="all", help="which configuration(s) to measure"
    )
    parser.add_argument(
        "--baseline", metavar="REF", help="also measure git ref REF's code ('before'), in the same run"
    )
    parser.add_argument(
        "--no-wrk", action="store_true", help="use the Python client even if wrk is installed"
    )
    parser.add_argument(
        "--nice", type=int, default=0, help="scheduling priority of the server and load generator (root: -10)"
    )
    parser.add_argument(
        "--profile", action="store_true", help="also profile the server with py-spy (an extra step)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="3 s steps; print only, do not write BENCHMARKS.md"
    )
    args = parser.parse_args()
    if args.quick:
        args.seconds = 3.0
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    configs = list(CONFIGS.values()) if args.config == "all" else [CONFIGS[args.config]]
    baseline = baseline_source(args.baseline) if args.baseline else None
    machine = Machine()
    loads = [os.getloadavg()[0]]
    print(HEADER, flush=True)
    runs: list[Run] = []
    try:
        for config in configs:
            if baseline is not None:
                runs.append(run_config(config, args, code="before", src=baseline))
            runs.append(run_config(config, args, code="after", src=None))
    finally:
        if baseline is not None:
            shutil.rmtree(baseline.parent, ignore_errors=True)
    loads.append(os.getloadavg()[0])
    text = report(args, runs, machine, (loads[0], loads[1]))
    print()
    print(text)
    if not args.quick:
        write_section(SECTION, text)
        print(f"\nwritten to BENCHMARKS.md, section '## {SECTION}'")


if __name__ == "__main__":
    main()
