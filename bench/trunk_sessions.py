"""How many concurrent phone calls over the SIP trunk one callgate server process sustains.

    python bench/trunk_sessions.py                # ramp 25, 50, 100, 150, 200, 300, 400 until a step fails
    python bench/trunk_sessions.py --steps 2 --window 2 --settle 1   # the CI smoke configuration (~30 s)

What it does: starts ``callgate serve`` (one uvicorn worker) in a subprocess with the SIP trunk on
loopback, a ``sip`` carrier whose inbound network is loopback and a number answered by a listening agent
(a prompt agent without a greeting: nothing is said unless the caller speaks). This client (one process,
``bench/_rtp.py``) dials the number over UDP, more calls at each step, and every call streams a phone's
microphone: PCMU 20 ms packets of a quiet room (-60 dBFS noise), phase-staggered over four 5 ms slots of
a shared 20 ms clock. The server runs the whole inbound path for every call (RTP, jitter buffer, μ-law
decoding, 8 -> 16 kHz, Silero VAD and the turn detector, the recording) and its paced RTP sender sends
every call a continuous stream back (silence between replies): this is the trunk's *listening* load.

Per step, after connecting the new calls and ``--settle`` seconds, a window of ``--window`` seconds
measures: the arrival lateness of the server's RTP at the client (per call, each packet against the
call's own 20 ms clock anchored at its earliest packet in the window; late: > 40 ms), packets lost,
caller audio the server dropped (``callgate_input_dropped_seconds``), calls that ended or could not
be placed, server CPU and RSS, the ``/healthz`` round trip, this client's own send lateness and CPU, and
CPU used by other processes. A step passes when <= 1% of packets are late, <= 1% lost, no caller audio
is dropped and every call is up. No priority changes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _rtp import SipCall, route_number
from _server import (
    BenchServer,
    Machine,
    busiest_processes,
    fmt_ms,
    free_port,
    machine_busy_seconds,
    percentile,
    process_cpu_seconds,
    write_section,
)

NUMBER = "+15550100300"
SECTION = "Concurrent SIP trunk calls"
STEPS = [25, 50, 100, 150, 200, 300, 400]
LATE_S = 0.040
SLOTS = 4  # phase stagger: four 5 ms slots per 20 ms


@dataclass
class Step:
    calls: int
    up: int = 0
    refused: int = 0
    packets: int = 0
    late: int = 0
    lost: int = 0
    dropped_input_s: float = 0.0
    server_cores: float = 0.0
    loop_cores: float = 0.0
    """Of ``server_cores``, the event-loop (main) thread's: 1.0 is a saturated loop."""
    rss_mb: float = 0.0
    healthz_ms: float = 0.0
    client_cores: float = 0.0
    client_lateness: list[float] = field(default_factory=list)
    foreign_cores: float = 0.0
    foreign: list[tuple[float, str]] = field(default_factory=list)

    @property
    def late_pct(self) -> float:
        return 100 * self.late / self.packets if self.packets else 100.0

    @property
    def lost_pct(self) -> float:
        total = self.packets + self.lost
        return 100 * self.lost / total if total else 100.0

    @property
    def ok(self) -> bool:
        return (
            self.up == self.calls and self.late_pct <= 1.0 and self.lost_pct <= 1.0
            and self.dropped_input_s < 0.1
        )  # fmt: skip


class Clock:
    """One 20 ms clock for every call's microphone, in four staggered slots."""

    def __init__(self) -> None:
        self.calls: list[SipCall] = []
        self.lateness: list[float] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        start, tick = time.monotonic(), 0
        while True:
            due = start + tick * 0.02 / SLOTS
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            self.lateness.append(max(0.0, time.monotonic() - due))
            slot, n = tick % SLOTS, tick // SLOTS
            for call in self.calls[slot::SLOTS]:
                call.send_packet(call.noise_frame(n))
            tick += 1


def judge(calls: list[SipCall], since: float, until: float, step: Step) -> None:
    """Late and lost packets of each call in [since, until): against the call's own 20 ms clock."""
    for call in calls:
        window = [(t, s) for t, s in call.arrivals if since <= t < until]
        if len(window) < 2:
            continue
        seqs, last, offset = [], None, 0
        for _, seq in window:  # unwrap the 16-bit sequence numbers
            if last is not None and seq < last and last - seq > 30000:
                offset += 65536
            last = seq
            seqs.append(seq + offset)
        relative = [t - 0.02 * (s - seqs[0]) for (t, _), s in zip(window, seqs, strict=True)]
        anchor = min(relative)
        step.packets += len(window)
        step.late += sum(1 for r in relative if r - anchor > LATE_S)
        step.lost += max(0, seqs[-1] - seqs[0] + 1 - len(set(seqs)))


async def run(args: argparse.Namespace) -> tuple[list[Step], Machine, float]:
    machine = Machine()
    load1 = os.getloadavg()[0]
    sip_port = free_port()
    env = {"CALLGATE_SIP_LISTEN": f"127.0.0.1:{sip_port}", "CALLGATE_RTP_PORTS": "44000-47999",
           **dict(item.split("=", 1) for item in args.server_env)}  # fmt: skip
    steps: list[Step] = []
    with BenchServer(env=env) as server:
        print(f"server pid {server.pid} on {server.url}, SIP on 127.0.0.1:{sip_port}")
        agent = server.create_agent({
            "name": "listener", "prompt": "You listen.", "silence_timeout_s": 3600, "max_duration_s": 7200,
            # never called: the caller's quiet room never becomes a turn
            "llm": {"engine": "openai", "base_url": "http://127.0.0.1:9/v1", "model": "none"},
        })  # fmt: skip
        route_number(server, NUMBER, agent)
        clock = Clock()
        clock.start()
        calls: list[SipCall] = []
        refused = 0
        try:
            for target in args.ramp[: args.steps]:
                step = Step(calls=target)
                new = [SipCall(("127.0.0.1", sip_port), NUMBER, keep_arrivals=True, own_sender=False)
                       for _ in range(target - len(calls))]  # fmt: skip
                for i in range(0, len(new), 10):  # ten INVITEs at a time
                    batch = new[i : i + 10]
                    opened = await asyncio.gather(*(c.open() for c in batch), return_exceptions=True)
                    for call, outcome in zip(batch, opened, strict=True):
                        if isinstance(outcome, BaseException):
                            refused += 1
                            print(f"  a call was not placed: {outcome!r}")
                        else:
                            calls.append(call)
                            clock.calls.append(call)
                await asyncio.sleep(args.settle)
                pids = {os.getpid(), *server.pids()}
                before = server.metrics()
                cpu0, mine0 = server.cpu_seconds(), process_cpu_seconds(os.getpid())
                loop0 = server.thread_cpu_seconds()["main"]
                busy0, ours0 = machine_busy_seconds(), sum(process_cpu_seconds(p) for p in pids)
                lateness0 = len(clock.lateness)
                since = time.monotonic()
                await asyncio.sleep(args.window)
                until = time.monotonic()
                wall = until - since
                after = server.metrics()
                step.server_cores = (server.cpu_seconds() - cpu0) / wall
                step.loop_cores = (server.thread_cpu_seconds()["main"] - loop0) / wall
                step.client_cores = (process_cpu_seconds(os.getpid()) - mine0) / wall
                ours = (sum(process_cpu_seconds(p) for p in pids) - ours0) / wall
                step.foreign_cores = max(0.0, (machine_busy_seconds() - busy0) / wall - ours)
                step.dropped_input_s = after.get("callgate_input_dropped_seconds_total", 0.0) - before.get(
                    "callgate_input_dropped_seconds_total", 0.0
                )
                step.rss_mb = server.rss_mb()
                t0 = time.monotonic()
                server.api().get("/healthz")
                step.healthz_ms = 1000 * (time.monotonic() - t0)
                step.client_lateness = clock.lateness[lateness0:]
                step.refused = refused
                step.up = sum(1 for c in calls if not c.closed)
                judge(calls, since, until, step)
                for call in calls:  # keep memory flat: only the next window is judged
                    call.arrivals = [a for a in call.arrivals if a[0] >= until]
                if step.foreign_cores > 0.15:
                    step.foreign = busiest_processes(pids)
                steps.append(step)
                print(
                    f"  {step.calls} calls: {step.up} up, late {step.late_pct:.2f}% "
                    f"lost {step.lost_pct:.2f}% of {step.packets} packets, "
                    f"dropped input {step.dropped_input_s:.2f} s, server "
                    f"{step.server_cores:.2f} cores (loop {step.loop_cores:.2f}) {step.rss_mb:.0f} MB, "
                    f"healthz {step.healthz_ms:.0f} ms, "
                    f"client {step.client_cores:.2f} cores (send lateness p99 "
                    f"{fmt_ms(1000 * percentile(step.client_lateness, 99))} ms), others "
                    f"{step.foreign_cores:.2f} cores: {'ok' if step.ok else 'FAILED'}"
                )
                if not step.ok:
                    break
        finally:
            await clock.stop()
            await asyncio.gather(*(c.close() for c in calls), return_exceptions=True)
    return steps, machine, load1


def report(steps: list[Step], machine: Machine, load1: float, command: str) -> str:
    passed = [s.calls for s in steps if s.ok]
    best = max(passed) if passed else 0
    failed = next((s for s in steps if not s.ok), None)
    lines = [
        f"Measured {machine.line()}.",
        "",
        "```",
        command,
        "```",
        "",
        "One `callgate serve` process (one uvicorn worker) with the SIP trunk on loopback; calls to a "
        "number answered by a listening agent (no greeting); every call streams PCMU 20 ms packets of a "
        "quiet room from `bench/_rtp.py` (one client process, a shared phase-staggered clock) and the "
        "server streams RTP back to every call (silence between replies). A step passes when <= 1% of "
        "the server's packets arrive > 40 ms late against each call's own clock, <= 1% are lost, no "
        "caller audio is dropped and every call is up. No priority changes.",
        "",
        "| calls | up | late packets | lost | input dropped (s) | server cores (event loop) | "
        "server RSS (MB) | `/healthz` (ms) | client cores | client send lateness p99 (ms) | "
        "other processes (cores) | |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for s in steps:
        lines.append(
            f"| {s.calls} | {s.up} | {s.late_pct:.2f}% | {s.lost_pct:.2f}% | {s.dropped_input_s:.2f} | "
            f"{s.server_cores:.2f} ({s.loop_cores:.2f}) | {s.rss_mb:.0f} | {s.healthz_ms:.0f} | "
            f"{s.client_cores:.2f} | "
            f"{fmt_ms(1000 * percentile(s.client_lateness, 99))} | {s.foreign_cores:.2f} | "
            f"{'ok' if s.ok else '**failed**'} |"
        )
    lines += [
        "",
        f"Target >= 100 concurrent trunk calls per process: **{'met' if best >= 100 else 'not met'}** "
        f"(the highest passing step: {best} calls).",
    ]
    if failed is not None:
        why = []
        if failed.up < failed.calls:
            why.append(f"{failed.calls - failed.up} calls not up")
        if failed.late_pct > 1:
            why.append(f"{failed.late_pct:.1f}% of packets late")
        if failed.lost_pct > 1:
            why.append(f"{failed.lost_pct:.1f}% lost")
        if failed.dropped_input_s >= 0.1:
            why.append(f"{failed.dropped_input_s:.1f} s of caller audio dropped")
        lines.append(
            f"At {failed.calls} calls: {', '.join(why)}, with the server at {failed.server_cores:.2f} "
            f"cores of the machine's {machine.nproc}, {failed.loop_cores:.2f} of them its event-loop "
            "thread (one process: every call's media runs on that one loop"
            + (", which is saturated" if failed.loop_cores >= 0.9 else "")
            + f") and other processes "
            f"using {failed.foreign_cores:.2f} cores"
            + (f" ({'; '.join(f'{c:.2f}: {cmd}' for c, cmd in failed.foreign)})" if failed.foreign else "")
            + ". What dominates per call is the listening path every 20 ms: RTP in, jitter buffer, μ-law "
            "decoding and 8 -> 16 kHz, Silero VAD and the turn detector, the recording, and a paced RTP "
            "packet out."
        )
    lines.append(
        f"The 1-minute load average was {load1:.2f} when the run started"
        + (
            " (**taken under load**: the machine is shared with other engineers' test runs)."
            if load1 >= 0.5
            else "."
        )
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=len(STEPS), help="how many steps of the ramp to run")
    parser.add_argument("--ramp", type=lambda v: [int(x) for x in v.split(",")], default=STEPS,
                        help="the ramp, e.g. 25,50,100 (default 25 ... 400)")  # fmt: skip
    parser.add_argument("--window", type=float, default=10.0, help="measurement window per step (s)")
    parser.add_argument("--settle", type=float, default=3.0, help="seconds after connecting a step's calls")
    parser.add_argument("--server-env", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--no-write", dest="write", action="store_false", help="do not update BENCHMARKS.md")
    args = parser.parse_args()
    steps, machine, load1 = asyncio.run(run(args))
    command = "python bench/trunk_sessions.py" + (
        f" --steps {args.steps}" if args.steps != len(STEPS) else ""
    )
    if args.ramp != STEPS:
        command += f" --ramp {','.join(map(str, args.ramp))}"
    if args.window != 10.0:
        command += f" --window {args.window:g}"
    if args.settle != 3.0:
        command += f" --settle {args.settle:g}"
    text = report(steps, machine, load1, command)
    print()
    print(text)
    print()
    best = max((s.calls for s in steps if s.ok), default=0)
    last = steps[-1] if steps else Step(calls=0)
    print(
        f"RESULT trunk_sessions transport=sip_trunk steps={len(steps)} max_ok={best} "
        f"last_calls={last.calls} "
        f"last_up={last.up} last_packets={last.packets} last_server_cores={last.server_cores:.3f}"
    )
    full = args.steps >= 4 and args.window >= 10
    if args.write and full:
        write_section(SECTION, text)
        print(f"\nBENCHMARKS.md: section {SECTION!r} updated")
    sys.exit(0 if steps else 1)


if __name__ == "__main__":
    main()
