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
cross-checked with ``GET /v1/calls/{id}``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _server import (  # noqa: E402
    FRAME_BYTES,
    BenchServer,
    Machine,
    WSClient,
    binary_frame,
    demo_flow_body,
    fmt_ms,
    frames_of,
    last_voiced_frame,
    noise_pcm,
    percentile,
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
        "Two in the afternoon.",
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


async def run_call(
    server: BenchServer, agent_id: str, index: int, lines: list[str], turns: list[Turn]
) -> str:
    info = server.web_call(agent_id)
    call = Call(str(info["websocket_url"]))
    await call.open()
    try:
        # The greeting plays out first (speaking over it would be a barge-in).
        await call.wait_for("bot-stopped-speaking", since=0.0, timeout=60)
        for text in lines:
            if call.ended():
                print(f"  call {index}: ended early; skipping {text!r}")
                break
            await asyncio.sleep(0.4)  # a natural pause before the caller answers
            pcm = speech_pcm(text)
            frames = frames_of(pcm)
            voiced = last_voiced_frame(frames)
            turn = Turn(call=index, text=text, speech_s=len(pcm) / 2 / 16000)
            turns.append(turn)
            spoke_at = time.monotonic()
            call.speak(frames, voiced)
            await call.wait_until(lambda: call.mark_sent_at is not None, timeout=30)
            end_of_speech = call.mark_sent_at
            assert end_of_speech is not None
            got_audio = await call.wait_until(lambda: bool(call.audio) and call.audio[-1] >= spoke_at, 15)
            if not got_audio:
                turn.note = "no spoken answer within 15 s"
                print(f"  call {index}: {text!r}: {turn.note}")
                continue
            first = next(t for t in call.audio if t >= spoke_at)
            if first < end_of_speech:
                turn.note = f"agent audio {1000 * (end_of_speech - first):.0f} ms before end of speech"
            turn.client_ms = 1000 * (first - end_of_speech)
            with contextlib.suppress(TimeoutError, ConnectionError):
                _, metrics = await call.wait_for("metrics", since=first, timeout=60)
                turn.server = dict(metrics["data"].get("turn") or {})
                await call.wait_for("bot-stopped-speaking", since=first, timeout=5)
            heard = [m["data"].get("text", "") for t, m in call.messages
                     if t >= spoke_at and m.get("type") == "user-transcription" and m["data"].get("final")]  # fmt: skip
            turn.heard = " ".join(heard)
            print(
                f"  call {index}: {text!r} -> heard {turn.heard!r}: client {turn.client_ms:.0f} ms, "
                f"server total {fmt_ms(turn.server.get('total_ms'))} ms "
                f"(endpointing {fmt_ms(turn.server.get('endpointing_ms'))}, stt {fmt_ms(turn.server.get('stt_ms'))}, "
                f"agent {fmt_ms(turn.server.get('agent_first_token_ms'))}, "
                f"tts {fmt_ms(turn.server.get('tts_first_audio_ms'))}) {turn.note}"
            )
        if not call.ended():
            if call.ws is not None:
                call.ws.send("disconnect-bot")
            await call.wait_until(call.ended, timeout=10)
        late = sorted(call.send_lateness)
        if late and late[int(0.99 * (len(late) - 1))] > 0.01:
            print(
                f"  warning: the client's own send lateness p99 is {1000 * late[int(0.99 * (len(late) - 1))]:.1f} ms"
            )
    finally:
        await call.close()
    return str(info["id"])


def _row(name: str, values: list[float]) -> str:
    return (
        f"| {name} | {fmt_ms(percentile(values, 50))} | {fmt_ms(percentile(values, 95))} | "
        f"{fmt_ms(max(values) if values else math.nan)} |"
    )


def report(
    turns: list[Turn], stored: list[dict[str, Any]], machine: Machine, command: str, wall_s: float
) -> str:
    answered = [t for t in turns if t.client_ms is not None]
    client = [t.client_ms for t in answered if t.client_ms is not None]
    stage = {s: [float(t.server[s]) for t in answered if t.server.get(s) is not None] for s in STAGES}
    vad_tail = [t.client_ms - float(t.server["total_ms"]) for t in answered
                if t.client_ms is not None and t.server.get("total_ms") is not None]  # fmt: skip
    p50, p95 = percentile(client, 50), percentile(client, 95)
    ok50, ok95 = p50 <= 500, p95 <= 800
    stored_p50 = [c["latency"]["p50_ms"] for c in stored if c.get("latency", {}).get("p50_ms") is not None]
    stored_turns = sum(int(c.get("latency", {}).get("turns") or 0) for c in stored)
    ep, stt = percentile(stage["endpointing_ms"], 50), percentile(stage["stt_ms"], 50)
    tts, agent = percentile(stage["tts_first_audio_ms"], 50), percentile(stage["agent_first_token_ms"], 50)
    other = p50 - (ep + stt + tts + agent)
    lines = [
        f"Measured {machine.line()}.",
        "",
        "```",
        command,
        "```",
        "",
        f"{len(answered)} answered turns of {len(turns)} spoken, over {len({t.call for t in turns})} calls with the "
        "demo clinic flow and the server's default engines (Silero VAD, faster-whisper tiny.en int8, piper "
        f"joe-medium); {wall_s:.0f} s wall time. The client streams 20 ms PCM16 frames in real time over the "
        "RTVI WebSocket (a -60 dBFS noise floor between utterances), speaks piper-synthesised lines the flow "
        "answers (opening hours, a booking with day/time/confirmation, goodbye), and waits for each answer to "
        "play out. **Latency = first agent audio frame received - send time of the last voiced (> -40 dBFS) "
        "frame of the utterance.** Stages are the server's own per-turn figures (`metrics` message).",
        "",
        "| measure (ms) | p50 | p95 | max |",
        "| --- | --- | --- | --- |",
        _row("**voice-to-voice at the client**", client),
        *[_row(f"server: {s}", stage[s]) for s in STAGES],
        _row("client - server total (VAD hang-over after the acoustic end + transport)", vad_tail),
        "",
        f"Targets: p50 <= 500 ms: **{'met' if ok50 else 'not met'}** ({fmt_ms(p50)} ms); "
        f"p95 <= 800 ms: **{'met' if ok95 else 'not met'}** ({fmt_ms(p95)} ms). "
        f"`GET /v1/calls/{{id}}` stored {stored_turns} agent turns with latency; per-call p50 "
        f"{', '.join(fmt_ms(v) for v in stored_p50)} ms (server-side `total_ms`, which starts at the last frame "
        "the VAD called speech).",
        "",
        "What dominates, at the p50: the end-of-turn silence `PipelineOptions.end_of_turn_silence_ms = "
        f"{END_OF_TURN_SILENCE_MS}` ms (endpointing {fmt_ms(ep)} ms) plus Silero's hang-over before it calls the "
        f"silence ({fmt_ms(percentile(vad_tail, 50))} ms, the client-server gap), then Whisper "
        f"({fmt_ms(stt)} ms: tiny.en always encodes a 30 s window), then piper's first sentence "
        f"({fmt_ms(tts)} ms); the flow agent itself takes {fmt_ms(agent)} ms. Unattributed "
        f"(queueing, framing, loop hops): {fmt_ms(other)} ms. Endpointing alone is larger than the whole 500 ms "
        "budget: the p50 target cannot be met with a fixed 550 ms silence rule, whatever the engines do.",
    ]
    notes = [t for t in turns if t.note]
    if notes:
        lines += ["", "Anomalies: " + "; ".join(f"call {t.call} {t.text!r}: {t.note}" for t in notes) + "."]
    return "\n".join(lines)


async def main_async(args: argparse.Namespace) -> None:
    machine = Machine()
    scripts = (
        SCRIPTS[: args.calls]
        if args.calls <= len(SCRIPTS)
        else [SCRIPTS[i % len(SCRIPTS)] for i in range(args.calls)]
    )
    print("synthesising caller speech (cached after the first run)...")
    for lines in scripts:
        for text in lines:
            speech_pcm(text)
    started = time.monotonic()
    turns: list[Turn] = []
    stored: list[dict[str, Any]] = []
    with BenchServer() as server:
        print(f"server pid {server.pid} on {server.url} (data dir {server.dir})")
        agent_id = server.create_agent(
            {
                "name": "clinic-bench",
                "flow": demo_flow_body(),
                "silence_timeout_s": 120,
                "max_duration_s": 600,
            }
        )
        call_ids = []
        for i, lines in enumerate(scripts):
            call_ids.append(await run_call(server, agent_id, i, lines, turns))
        await asyncio.sleep(1.0)  # turn records are written asynchronously
        for call_id in call_ids:
            with contextlib.suppress(Exception):
                stored.append(server.get_call(call_id))
    wall = time.monotonic() - started
    command = "python bench/latency.py" + (" --quick" if args.quick else f" --calls {args.calls}")
    text = report(turns, stored, machine, command, wall)
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
