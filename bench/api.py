"""API throughput and latency: ``POST /v1/web-calls`` against a no-op endpoint, same server, same run.

    python bench/api.py              # ~1-2 min; writes "## API: create web call" in BENCHMARKS.md
    python bench/api.py --quick      # 3 s per step; prints, writes nothing
    python bench/api.py --profile    # and a py-spy profile of the create path (an extra step)
    python bench/api.py --nice -10   # on a shared machine (root): server and load ahead of others

What it does: starts ``callgate serve`` (one uvicorn worker, SQLite in a fresh temporary data dir, speech
warm-up off) in a subprocess, creates a secret key with a very high rate limit (``callgate keys create``)
and a prompt agent, then loads two endpoints from this (separate) process:

* ``GET /healthz`` — the no-op: the same server, middleware stack (request log, metrics, body limit,
  CORS) and HTTP parsing, but no key, no database, no token. It is a GET because every POST route
  does real work; the difference between the two rows is what creating a call costs.
* ``POST /v1/web-calls`` — authenticate the key (cached), count its rate limit, check the agent and the
  team's live-call cap, insert the call and its ``call.created`` event (group-committed), sign the
  single-use JWT, answer 201.

Two kinds of load, each preceded by a short warm-up that is not counted:

1. **Saturation** (closed loop, ``wrk`` with 32 connections when installed, otherwise the Python
   client below): the most requests per second the server completes. Latency here is mostly queueing
   (Little's law: 32 connections / throughput).
2. **Fixed rate** (open loop, the target rate, 1,000/s by default): requests are sent on a schedule,
   whatever the server does, and latency is measured from the *scheduled* send time, so a stalled
   server cannot hide its stall (no coordinated omission). This is the p50/p99 the target is about.
   When the server cannot keep that rate, a third step measures latency at half its maximum rate.

Calls are created with a join deadline of 10 minutes so the join-deadline sweeper (which would fail
them all a minute later) stays out of the measurement.
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

from _server import BenchServer, Machine, fmt_ms, machine_busy_seconds, percentile, write_section

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


def _wrk_step(url: str, ep: Endpoint, args: argparse.Namespace, commands: list[str]) -> Result:
    result, cmd = wrk(url, ep, seconds=args.seconds, connections=CONNECTIONS)
    commands.append(cmd)
    return result


def run(args: argparse.Namespace) -> tuple[list[Result], list[str], Machine, dict[str, float], list[str]]:
    env = {
        "CALLGATE_SPEECH_WARMUP": "false",
        "CALLGATE_LOG_LEVEL": "WARNING",
        "CALLGATE_JOIN_DEADLINE_S": "600",
    }
    machine = Machine()
    results: list[Result] = []
    commands: list[str] = []
    busy_profile: list[str] = []
    use_wrk = shutil.which("wrk") is not None and not args.no_wrk
    with BenchServer(workers=args.workers, env=env) as server:
        if args.nice:
            # On a shared machine: run the server (and, inherited, wrk and this process) ahead of others.
            # Linux nice is per thread: every thread of the server, and this one (wrk inherits it).
            tids = [int(t.name) for pid in server.pids() for t in Path(f"/proc/{pid}/task").iterdir()]
            for tid in [*tids, os.getpid()]:
                os.setpriority(os.PRIO_PROCESS, tid, args.nice)
        agent_id = server.create_agent(PROMPT_AGENT)
        host, port = "127.0.0.1", server.port
        endpoints = [
            Endpoint("GET /healthz (no-op)", "GET", "/healthz"),
            Endpoint(
                "POST /v1/web-calls",
                "POST",
                "/v1/web-calls",
                {"Authorization": f"Bearer {server.key}", "Content-Type": "application/json"},
                json.dumps({"agent_id": agent_id}).encode(),
                expect=201,
            ),
        ]
        cpu_before = server.cpu_seconds()
        wall_before = time.monotonic()

        def measured(step: Callable[[], Result]) -> Result:
            server_before, machine_before, own_before = (
                server.cpu_seconds(),
                machine_busy_seconds(),
                _own_cpu(),
            )
            began = time.monotonic()
            result = step()
            elapsed = time.monotonic() - began
            result.server_cpu_s = server.cpu_seconds() - server_before
            others = machine_busy_seconds() - machine_before - result.server_cpu_s - (_own_cpu() - own_before)
            result.other_cores = max(0.0, others / elapsed)
            results.append(result)
            print(_row(result), flush=True)
            _wait_until_idle(server)
            return result

        def saturate(ep: Endpoint) -> Result:
            if use_wrk:
                return _wrk_step(server.url, ep, args, commands)
            return asyncio.run(closed_loop(host, port, ep, seconds=args.seconds, connections=CONNECTIONS))

        def fixed_rate(ep: Endpoint, rate: float) -> Result:
            return asyncio.run(open_loop(host, port, ep, seconds=args.seconds, rate=rate))

        for ep in endpoints:
            # Warm-up (not counted): key cache, SQLite page cache, lazily imported paths.
            asyncio.run(closed_loop(host, port, ep, seconds=1.0, connections=CONNECTIONS))
            measured(partial(saturate, ep))
        for ep in endpoints:
            measured(partial(fixed_rate, ep, args.rate))
        # When the target rate is beyond the server: latency at a rate it sustains (half its maximum).
        if (saturated := results[1].throughput) < args.rate:
            measured(partial(fixed_rate, endpoints[1], max(1.0, round(saturated / 2))))
        busy = {"server_cpu_s": server.cpu_seconds() - cpu_before, "wall_s": time.monotonic() - wall_before}
        if args.profile:
            out = server.dir / "profile.txt"
            spy = start_profile(server.pid, args.seconds, out)
            if spy is not None:
                time.sleep(0.5)  # let py-spy attach
                asyncio.run(
                    closed_loop(host, port, endpoints[1], seconds=args.seconds, connections=CONNECTIONS)
                )
                spy.wait(timeout=args.seconds + 60)
                profile = summarize_profile(out) if out.exists() else "(py-spy wrote nothing)"
                print("\nprofile of POST /v1/web-calls at saturation:\n" + profile, flush=True)
                busy_profile.append(profile)
        calls = server.metrics().get('callgate_calls_created_total{transport="websocket"}', 0.0)
        busy["calls_created"] = calls
        if server.proc is not None and server.proc.poll() is not None:
            raise RuntimeError(f"the server died:\n{server.log_tail()}")
    return results, commands, machine, busy, busy_profile


HEADER = (
    "| endpoint | load | throughput (req/s) | p50 ms | p99 ms | errors | server CPU ms/req "
    "| other load (cores) |\n"
    "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"
)


def _row(r: Result) -> str:
    return (
        f"| {r.endpoint} | {r.load} | {r.throughput:,.0f} | {fmt_ms(r.p50_ms)} | {_ms1(r.p99_ms)} "
        f"| {r.errors} | {r.server_ms_per_request:.2f} | {r.other_cores:.1f} |"
    )


def _ms1(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def report(
    args: argparse.Namespace,
    results: list[Result],
    commands: list[str],
    machine: Machine,
    busy: dict[str, float],
) -> str:
    saturation = next(r for r in results if r.endpoint.startswith("POST") and "closed" in r.load)
    fixed = next(r for r in results if r.endpoint.startswith("POST") and "open" in r.load)
    noop = next(r for r in results if r.endpoint.startswith("GET") and "closed" in r.load)
    meets_rate = saturation.throughput >= 1000
    meets_p99 = fixed.p99_ms is not None and fixed.p99_ms <= 50 and fixed.errors == 0
    bound = "≥ " if "unanswered" in fixed.load else ""
    verdict = ("**Target met**" if meets_rate and meets_p99 else "**Target not met**") + (
        f" (≥ 1,000 calls/s on 2 cores, p99 ≤ 50 ms): {saturation.throughput:,.0f} calls/s at saturation "
        f"({saturation.throughput / 1000:.0%} of the target rate); at {args.rate:,.0f} calls/s scheduled, "
        f"p99 {bound}{_ms1(fixed.p99_ms)} ms."
    )
    sustained = [r for r in results if r.endpoint.startswith("POST") and "open" in r.load][1:]
    if sustained:
        r = sustained[0]
        verdict += (
            f" At {r.throughput:,.0f} calls/s (half the maximum), p50 {_ms1(r.p50_ms)} ms and "
            f"p99 {_ms1(r.p99_ms)} ms."
        )
    lines = [
        f"Command: `python bench/api.py` (`--seconds {args.seconds:.0f} --rate {args.rate:.0f} "
        f"--workers {args.workers}"
        + (f" --nice {args.nice}" if args.nice else "")
        + "`)"
        + (f"; saturation with `{commands[-1]}`" if commands else "")
        + ".",
        "",
        f"Machine: {machine.line()}.",
        "",
        f"Server: `callgate serve --workers {args.workers}` (uvicorn + uvloop + httptools), SQLite (WAL) "
        "in a fresh data dir, log level WARNING, speech warm-up off; load generated from a separate "
        "process on the same machine.",
        "",
        HEADER,
        *(_row(r) for r in results),
        "",
        verdict,
        "",
        f"A created call costs {1000 / saturation.throughput - 1000 / noop.throughput:.2f} ms of server time "
        f"more than the no-op ({1000 / saturation.throughput:.2f} ms vs {1000 / noop.throughput:.2f} ms per "
        "request at saturation). Server CPU over the whole run: "
        f"{busy['server_cpu_s']:.1f} s in {busy['wall_s']:.1f} s of wall time "
        f"({busy['calls_created']:,.0f} calls created).",
        "",
        "Saturation latency is queueing (32 connections / throughput); the fixed-rate rows are the ones to "
        "read for p50/p99. Fixed-rate latency counts from each request's scheduled send time. *Server CPU "
        "ms/req* is the server process's CPU time per completed request; *other load* is what the rest of "
        "the machine (not the server, not the load generator) used meanwhile, in cores of the 2 — "
        "figures taken while other work ran are not comparable with figures from an idle machine.",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each measured step")
    parser.add_argument("--rate", type=float, default=1000.0, help="scheduled rate of the fixed-rate steps")
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
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
    print(HEADER, flush=True)
    results, commands, machine, busy, profile = run(args)
    text = report(args, results, commands, machine, busy)
    if profile:
        text += (
            "\n\nWhere the server's time goes creating calls at saturation (`python bench/api.py --profile`, "
            "py-spy, 100 samples/s, non-blocking; a separate step, not the one measured above):\n\n"
            + profile[0]
        )
    print()
    print(text)
    if not args.quick:
        write_section(SECTION, text)
        print(f"\nwritten to BENCHMARKS.md, section '## {SECTION}'")


if __name__ == "__main__":
    main()
