"""Voice-to-voice latency of a web call, measured at the client.

    python bench/latency.py            # 3 calls x 7 turns = 21 turns (~3 min)
    python bench/latency.py --quick    # 1 call, 7 turns (~1 min); figures are not written

What it does: starts ``callgate serve`` in a subprocess (default engines: Silero VAD, faster-whisper
tiny.en, piper), creates the demo clinic flow agent through the REST API, and makes voice calls over the
WebSocket/RTVI transport. The client streams a microphone: 20 ms PCM16 frames in real time, a quiet room
(-60 dBFS noise) between utterances. It waits for the greeting to play out, then speaks each line of a
conversation the flow understands (piper speech, the server's own voice) and waits until the agent's
answer has played before it speaks again.

Latency of a turn = first agent audio frame received - the moment the client sent the last voiced frame
of the utterance (the last 20 ms frame above -40 dBFS, computed from the audio itself; trailing silence
does not count). The per-stage breakdown is the server's own (``metrics`` RTVI message per agent turn,
cross-checked with ``GET /v1/calls/{id}``), plus two client-side marks (``user-stopped-speaking`` and the
final ``user-transcription``). A call the flow ends early (e.g. misheard answers lead to a transfer) is
continued in a new call, so every line is spoken.

On a shared machine the server runs at niceness -10 in a scheduler autogroup of nice -10 and this client
under SCHED_RR (``--server-nice 0 --no-client-rt`` to compete on equal terms); the CPU other processes
used during the run is reported.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import sys
import time
from dataclasses import dataclass, field
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
    fmt_ms,
    frames_of,
    last_voiced_frame,
    machine_busy_seconds,
    noise_pcm,
    percentile,
    prioritize_session,
    process_cpu_seconds,
    realtime_priority,
    set_niceness,
    speech_pcm,
    write_section,
)

STAGES = ("endpointing_ms", "stt_ms", "agent_first_token_ms", "tts_first_audio_ms", "total_ms")
END_OF_TURN_SILENCE_MS = (
    550  # PipelineOptions.end_of_turn_silence_ms (server default, not configurable per call)
)

# Conversations the demo flow follows; every line gets a spoken answer.
SCRIPTS: list[list[str]] = [
    [
        "What are your opening hours?",
        "Yes please.",
        "I would like to book an appointment.",
        "Tomorrow.",
        "At three pm.",
        "Yes.",
        "No, that's all. Goodbye.",
    ],
    [
        "Hi, I need to book an appointment please.",
        "Next Friday.",
        "Ten in the morning.",
        "Yes, that's right.",
        "Yes.",
        "When are you open on Saturday?",
        "No thank you, goodbye.",
    ],
    [
        "I'd like to make an appointment for Monday.",
        "At two pm, please.",
        "Yes please.",
        "Yes.",
        "What time do you close?",
        "Yes.",
        "That's all, bye.",
    ],
]


@dataclass
class Turn:
    call: int
    text: str
    speech_s: float
    client_ms: float | None = None
    server: dict[str, Any] = field(default_factory=dict)
    heard: str = ""
    note: str = ""
    client_stages: dict[str, float] = field(default_factory=dict)


class Call:
    """One voice call: a microphone that never stops sending, and everything received, timestamped."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.audio: list[float] = []  # arrival times of agent audio frames
        self.messages: list[tuple[float, dict[str, Any]]] = []
        self.changed = asyncio.Event()
        self.ws: WSClient | None = None
        self.pending: list[bytes] = []
        self.mark_index = -1
        self.mark_sent_at: float | None = None
        self.send_lateness: list[float] = []
        self._noise = [binary_frame(f) for f in frames_of(noise_pcm(2.0, seed=7))]
        self._sender: asyncio.Task[None] | None = None

    def _on_audio(self, t: float, payload: bytes) -> None:
        self.audio.append(t)
        self.changed.set()

    def _on_message(self, t: float, msg: dict[str, Any]) -> None:
        self.messages.append((t, msg))
        self.changed.set()

    async def open(self) -> None:
        self.ws = await WSClient.connect(self.url, self._on_audio, self._on_message)
        self.ws.send("client-ready", {"version": "1.0.0", "audio": {"output_sample_rate": 16000}})
        await self.wait_for("bot-ready", since=0.0, timeout=30)
        self._sender = asyncio.create_task(self._send_forever())

    async def close(self) -> None:
        if self._sender is not None:
            self._sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sender
        if self.ws is not None:
            self.ws.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.ws.closed.wait(), 5)

    async def _send_forever(self) -> None:
        assert self.ws is not None
        start = time.monotonic()
        n = 0
        while not self.ws.closed.is_set():
            due = start + n * 0.02
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            now = time.monotonic()
            self.send_lateness.append(now - due)
            if self.pending:
                self.ws.write(self.pending.pop(0))
                if self.mark_index == 0:
                    self.mark_sent_at = now
                    self.changed.set()
                self.mark_index -= 1
            else:
                self.ws.write(self._noise[n % len(self._noise)])
            n += 1

    def speak(self, frames: list[bytes], voiced_until: int) -> None:
        """Queue an utterance; ``mark_sent_at`` becomes the send time of frame ``voiced_until``."""
        self.mark_sent_at = None
        self.mark_index = voiced_until
        self.pending = [binary_frame(f) for f in frames]

    def find(self, type_: str, since: float) -> tuple[float, dict[str, Any]] | None:
        return next(((t, m) for t, m in self.messages if t >= since and m.get("type") == type_), None)

    def ended(self) -> bool:
        return (self.ws is not None and self.ws.closed.is_set()) or any(
            m.get("type") == "server-message" and m.get("data", {}).get("type") == "call-ended"
            for _, m in self.messages
        )

    async def wait_for(self, type_: str, *, since: float, timeout: float) -> tuple[float, dict[str, Any]]:
        async with asyncio.timeout(timeout):
            while True:
                found = self.find(type_, since)
                if found is not None:
                    return found
                if self.ws is not None and self.ws.closed.is_set():
                    raise ConnectionError(f"closed ({self.ws.close_code}) while waiting for {type_}")
                self.changed.clear()
                await self.changed.wait()

    async def wait_until(self, predicate: Any, timeout: float) -> bool:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                while not predicate():
                    self.changed.clear()
                    await self.changed.wait()
                return True
        return False


async def speak_turn(call: Call, index: int, text: str) -> Turn | None:
    """Speak one line and wait until the agent's answer has played out; None if the call is over."""
    pcm = speech_pcm(text)
    frames = frames_of(pcm)
    voiced = last_voiced_frame(frames)
    turn = Turn(call=index, text=text, speech_s=len(pcm) / 2 / 16000)
    spoke_at = time.monotonic()
    call.speak(frames, voiced)
    await call.wait_until(lambda: call.mark_sent_at is not None or call.ended(), timeout=30)
    end_of_speech = call.mark_sent_at
    if end_of_speech is None:
        return None  # the call ended (the agent hung up or transferred) before the line was spoken

    def answered() -> bool:
        return bool(call.audio) and call.audio[-1] >= spoke_at

    if not await call.wait_until(answered, 15):
        turn.note = "no spoken answer within 15 s"
        return turn
    first = next(t for t in call.audio if t >= spoke_at)
    if first < end_of_speech:
        turn.note = f"agent audio {1000 * (end_of_speech - first):.0f} ms before the end of speech"
    turn.client_ms = 1000 * (first - end_of_speech)
    stopped = call.find("user-stopped-speaking", spoke_at)
    final = next(((t, m) for t, m in call.messages if t >= spoke_at and m.get("type") == "user-transcription"
                  and m.get("data", {}).get("final")), None)  # fmt: skip
    if stopped is not None:
        turn.client_stages["end of turn decided (user-stopped-speaking)"] = 1000 * (
            stopped[0] - end_of_speech
        )
    if final is not None:
        turn.client_stages["final transcript (user-transcription)"] = 1000 * (final[0] - end_of_speech)
        turn.heard = str(final[1]["data"].get("text", ""))
    with contextlib.suppress(TimeoutError, ConnectionError):
        _, metrics = await call.wait_for("metrics", since=first, timeout=60)
        turn.server = dict(metrics["data"].get("turn") or {})
        await call.wait_for("bot-stopped-speaking", since=first, timeout=5)
    return turn


async def run_call(
    server: BenchServer, agent_id: str, index: int, lines: list[str], turns: list[Turn]
) -> tuple[str, list[float], list[str]]:
    """One call speaking ``lines``; returns the call id, the client's send lateness, and the lines left
    unspoken because the call ended early (e.g. the flow transferred after misheard answers)."""
    info = server.web_call(agent_id)
    call = Call(str(info["websocket_url"]))
    await call.open()
    try:
        # The greeting plays out first (speaking over it would be a barge-in).
        await call.wait_for("bot-stopped-speaking", since=0.0, timeout=60)
        left = list(lines)
        while left:
            await asyncio.sleep(0.4)  # a natural pause before the caller answers
            if call.ended():
                break
            turn = await speak_turn(call, index, left[0])
            if turn is None:
                break
            left.pop(0)
            turns.append(turn)
            srv = turn.server
            print(
                f"  call {index}: {turn.text!r} -> heard {turn.heard!r}: client {fmt_ms(turn.client_ms)} ms; "
                f"server total {fmt_ms(srv.get('total_ms'))} = endpointing "
                f"{fmt_ms(srv.get('endpointing_ms'))} "
                f"+ stt {fmt_ms(srv.get('stt_ms'))} + agent {fmt_ms(srv.get('agent_first_token_ms'))} "
                f"+ tts {fmt_ms(srv.get('tts_first_audio_ms'))} {turn.note}"
            )
        if left:
            print(f"  call {index}: the agent ended the call early; {len(left)} lines left for a new call")
        if not call.ended():
            if call.ws is not None:
                call.ws.send("disconnect-bot")
            await call.wait_until(call.ended, timeout=10)
    finally:
        await call.close()
    return str(info["id"]), call.send_lateness, left


def _row(name: str, values: list[float]) -> str:
    return (
        f"| {name} | {fmt_ms(percentile(values, 50))} | {fmt_ms(percentile(values, 95))} | "
        f"{fmt_ms(max(values) if values else math.nan)} |"
    )


@dataclass
class Load:
    wall_s: float = 0.0
    server_cores: float = 0.0
    client_cores: float = 0.0
    foreign_cores: float = 0.0
    send_p99_ms: float = math.nan
    foreign: list[tuple[float, str]] = field(default_factory=list)
    prioritized: bool = False
    nice: int = 0


def report(
    turns: list[Turn], stored: list[dict[str, Any]], machine: Machine, command: str, load: Load
) -> str:
    answered = [t for t in turns if t.client_ms is not None]
    client = [t.client_ms for t in answered if t.client_ms is not None]
    stage = {s: [float(t.server[s]) for t in answered if t.server.get(s) is not None] for s in STAGES}
    client_stage_names = [
        "end of turn decided (user-stopped-speaking)",
        "final transcript (user-transcription)",
    ]
    client_stage = {
        n: [t.client_stages[n] for t in answered if n in t.client_stages] for n in client_stage_names
    }
    vad_tail = [t.client_ms - float(t.server["total_ms"]) for t in answered
                if t.client_ms is not None and t.server.get("total_ms") is not None]  # fmt: skip
    p50, p95 = percentile(client, 50), percentile(client, 95)
    stored_p50 = [
        c["latency"]["p50_ms"] for c in stored if (c.get("latency") or {}).get("p50_ms") is not None
    ]
    stored_turns = sum(int((c.get("latency") or {}).get("turns") or 0) for c in stored)
    ep, stt = percentile(stage["endpointing_ms"], 50), percentile(stage["stt_ms"], 50)
    tts, agent = percentile(stage["tts_first_audio_ms"], 50), percentile(stage["agent_first_token_ms"], 50)
    tail = percentile(vad_tail, 50)
    calls = len({t.call for t in turns})
    lines = [
        f"Measured {machine.line()}.",
        "",
        "```",
        command,
        "```",
        "",
        f"{len(answered)} answered turns of {len(turns)} spoken, in {calls} calls to the demo "
        "clinic flow with "
        "the server's default engines (Silero VAD, faster-whisper tiny.en int8, piper joe-medium), one "
        f"`callgate serve` subprocess; {load.wall_s:.0f} s wall time. The client streams 20 ms "
        "PCM16 frames in "
        "real time over the RTVI WebSocket (a -60 dBFS noise floor between utterances), speaks "
        "piper-synthesised lines the flow answers (opening hours, a booking with day, time and confirmation, "
        "goodbye) and waits for each answer to play out. **Latency = arrival of the first agent audio frame "
        "- the moment the client sent the last voiced (> -40 dBFS) frame of the utterance.** Server stages "
        "are the server's own per-turn figures (RTVI `metrics`); `total_ms` starts at the last frame Silero "
        "still called speech.",
        "",
        "| measure (ms) | p50 | p95 | max |",
        "| --- | --- | --- | --- |",
        _row("**voice-to-voice, at the client**", client),
        *[_row(f"client: end of speech -> {n}", client_stage[n]) for n in client_stage_names],
        *[_row(f"server: `{s}`", stage[s]) for s in STAGES],
        _row("client latency - server `total_ms` (Silero hang-over + transport)", vad_tail),
        "",
        f"Targets: p50 <= 500 ms **{'met' if p50 <= 500 else 'not met'}** ({fmt_ms(p50)} ms); "
        f"p95 <= 800 ms **{'met' if p95 <= 800 else 'not met'}** ({fmt_ms(p95)} ms). "
        f"`GET /v1/calls/{{id}}` stored {stored_turns} agent turns with their latency (per-call p50 of "
        f"`total_ms`: {', '.join(fmt_ms(v) for v in stored_p50)} ms).",
        "",
        f"What dominates (p50s): the end-of-turn silence, `PipelineOptions.end_of_turn_silence_ms` = "
        f"{END_OF_TURN_SILENCE_MS} ms (measured endpointing {fmt_ms(ep)} ms), plus Silero's "
        "hang-over after the "
        f"acoustic end before it reports silence ({fmt_ms(tail)} ms): about {fmt_ms(ep + tail)} "
        "ms before the "
        f"server even decides the caller is done, more than the whole 500 ms budget. Then Whisper "
        f"({fmt_ms(stt)} ms), piper's first sentence ({fmt_ms(tts)} ms) and the flow ({fmt_ms(agent)} ms).",
        "",
        (
            f"The server ran at niceness {load.nice} in a scheduler autogroup of nice {load.nice}, so other "
            "processes on this shared machine got only what it left. "
            if load.prioritized
            else ""
        )
        + f"Load during the run: server {load.server_cores:.2f} cores, this client "
        f"{load.client_cores:.2f} cores "
        f"(its own send lateness p99 {fmt_ms(load.send_p99_ms)} ms), other processes on the machine "
        f"{load.foreign_cores:.2f} cores"
        + (f" ({'; '.join(f'{c:.2f} cores: {cmd}' for c, cmd in load.foreign)})" if load.foreign else "")
        + ".",
    ]
    notes = [t for t in turns if t.note]
    if notes:
        lines += ["", "Anomalies: " + "; ".join(f"call {t.call} {t.text!r}: {t.note}" for t in notes) + "."]
    return "\n".join(lines)


async def main_async(args: argparse.Namespace) -> None:
    machine = Machine()
    scripts = [SCRIPTS[i % len(SCRIPTS)] for i in range(args.calls)]
    print("synthesising caller speech (cached after the first run)...")
    for lines in scripts:
        for text in lines:
            speech_pcm(text)
    turns: list[Turn] = []
    stored: list[dict[str, Any]] = []
    load = Load()
    lateness: list[float] = []
    env = dict(item.split("=", 1) for item in args.server_env)
    prioritized = args.server_nice < 0 and prioritize_session(args.server_nice)
    if args.client_nice:
        set_niceness(args.client_nice)
    if args.client_rt:
        realtime_priority()
    with BenchServer(env=env, nice=args.server_nice) as server:
        print(f"server pid {server.pid} on {server.url}")
        agent = {
            "name": "clinic-bench",
            "flow": demo_flow_body(),
            "silence_timeout_s": 120,
            "max_duration_s": 600,
        }
        agent_id = server.create_agent(agent)
        started = time.monotonic()
        cpu0, mine0, busy0 = server.cpu_seconds(), process_cpu_seconds(os.getpid()), machine_busy_seconds()
        call_ids = []
        index = 0
        for lines in scripts:
            for _attempt in range(2):  # lines left by a call that ended early go to one more call
                call_id, late, lines = await run_call(server, agent_id, index, lines, turns)
                call_ids.append(call_id)
                lateness += late
                index += 1
                if not lines:
                    break
        load.wall_s = time.monotonic() - started
        load.server_cores = (server.cpu_seconds() - cpu0) / load.wall_s
        load.client_cores = (process_cpu_seconds(os.getpid()) - mine0) / load.wall_s
        busy = (machine_busy_seconds() - busy0) / load.wall_s
        load.foreign_cores = max(0.0, busy - load.server_cores - load.client_cores)
        load.send_p99_ms = 1000 * percentile(lateness, 99)
        if load.foreign_cores > 0.15:
            load.foreign = busiest_processes({os.getpid(), *server.pids()})
        await asyncio.sleep(1.0)  # turn records are written asynchronously
        for call_id in call_ids:
            with contextlib.suppress(Exception):
                stored.append(server.get_call(call_id))
    command = "python bench/latency.py" + (" --quick" if args.quick else "")
    if args.calls != 3 and not args.quick:
        command += f" --calls {args.calls}"
    load.prioritized = prioritized
    load.nice = args.server_nice
    text = report(turns, stored, machine, command, load)
    print()
    print(text)
    answered = sum(1 for t in turns if t.client_ms is not None)
    if args.write and not args.quick:
        if answered < 20:
            print(f"\nonly {answered} answered turns (< 20): BENCHMARKS.md not updated")
        else:
            write_section("Voice-to-voice latency", text)
            print("\nBENCHMARKS.md: section 'Voice-to-voice latency' updated")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=3, help="calls of 7 turns each (default 3 = 21 turns)")
    parser.add_argument("--quick", action="store_true", help="1 call (7 turns); BENCHMARKS.md is not written")
    parser.add_argument(
        "--server-env", action="append", default=[], metavar="NAME=VALUE",
        help="extra environment for the server process (repeatable), e.g. CALLGATE_LOG_LEVEL=WARNING",
    )  # fmt: skip
    parser.add_argument(
        "--server-nice", type=int, default=-10,
        help="niceness of the server (default -10, so other processes on a shared machine get only what it "
        "leaves; 0 to compete with them on equal terms)",
    )  # fmt: skip
    parser.add_argument(
        "--no-client-rt", dest="client_rt", action="store_false",
        help="do not run this client under SCHED_RR (by default it does, so it keeps real time)",
    )  # fmt: skip
    parser.add_argument("--client-nice", type=int, default=-15, help="niceness of this client process")
    parser.add_argument("--no-write", dest="write", action="store_false", help="do not update BENCHMARKS.md")
    args = parser.parse_args()
    if args.quick:
        args.calls = 1
    try:
        import uvloop

        uvloop.run(main_async(args))
    except ImportError:
        asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
