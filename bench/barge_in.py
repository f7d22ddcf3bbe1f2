"""Barge-in measured at the client: how soon the agent's audio stops when the caller talks over it, over
WebSocket, WebRTC and a phone line (the SIP trunk) against a real server, and what a backchannel does.

    python bench/barge_in.py                     # 20 calls per transport (~9 min), writes BENCHMARKS.md
    python bench/barge_in.py --calls 1 --no-write   # the CI smoke configuration

What it does: starts ``callgate serve`` in a subprocess (default engines: Silero VAD, faster-whisper
tiny.en, piper; its SIP trunk listening on loopback, a number routed to the agent) and makes voice calls
to the demo clinic flow, taking the transports in turn. The caller is a microphone that streams 20 ms
frames in real time with -60 dBFS room noise between utterances (``bench/_calls.py``; on the phone,
``bench/_rtp.py``: a SIP UAC sending G.711 μ-law RTP at 8 kHz). In each call, while the agent says its
greeting (~9 s of speech):

1. ~1 s after its first audible frame, the caller says a backchannel ("Uh-huh.", "Yeah." ...; piper
   speech). The longest gap in the agent's audio from the backchannel's onset to 1.5 s after its end is
   the hold the caller heard (the agent pauses while it cannot tell a backchannel from an
   interruption).
2. At a seeded random moment 3.5-5.5 s after the first audible frame, the caller interrupts ("Wait, I
   need to change the time." ...). **Barge-in stop = the end of the last audible (> -60 dBFS) agent
   frame to arrive after the interruption's onset, i.e. its arrival + 20 ms, - the moment the client
   handed over the interruption's first voiced (> -40 dBFS) frame.** Frames are counted until the
   agent's next turn began (as stored), at most 1 s after the interruption's last voiced frame: an
   interruption with a pause in it ("No no, | the other branch please.") may end a turn and be
   answered, and that answer is no part of the barge-in.

Then the call's stored record (``GET /v1/calls/{id}``) judges it: the greeting (the first agent turn)
must be ``interrupted`` (else the interruption was missed), and no caller turn may begin before the
interruption (a backchannel that became a turn of its own cut the agent off: a false interruption).

WebSocket: RTVI JSON + PCM16 binary frames. WebRTC: an aiortc peer (Opus both ways; agent audio taken
at RTP arrival, before any jitter buffer). SIP trunk: plain RTP, agent audio taken at packet arrival. A
client's own playback buffer comes on top (a browser's WebRTC jitter buffer; the web SDK's 60 ms
WebSocket prebuffer; a carrier's and a handset's jitter buffers).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import itertools

from _calls import Call, RTCCall, WSCall
from _rtp import SipCall, route_number, sip_call_id
from _server import (
    BenchServer,
    Machine,
    demo_flow_body,
    first_voiced_frame,
    fmt_ms,
    frames_of,
    free_port,
    last_voiced_frame,
    percentile,
    run_main,
    speech_pcm,
    write_section,
)
from _webrtc import use_loopback

SECTION = "Barge-in at the client"
TRANSPORTS = ("websocket", "webrtc", "sip_trunk")
LABELS = {"websocket": "WebSocket", "webrtc": "WebRTC", "sip_trunk": "SIP trunk"}
NUMBER = "+15550100400"
UNTIL_S = 1.0
"""Agent audio is counted until this long after the interruption's last voiced frame at most, and never
after the next agent turn began (:func:`_judge`)."""
BACKCHANNELS = ["Uh-huh.", "Yeah.", "Okay.", "Right.", "I see.", "Sure."]
"""Said by piper. Not "Mm-hmm.": piper cannot hum, and Whisper hears its attempt as "in a month." (espeak-ng's
as "" or "and momentum."), which is no backchannel for any system; a real caller's hum is untested here."""
INTERRUPTIONS = [
    "Wait, I need to change the time.", "Sorry, that's not what I asked.", "No, I said Thursday.",
    "Hold on, can you repeat that?", "Actually I want to cancel instead.", "Stop, that's the wrong address.",
    "Excuse me, I have a question.", "No no, the other branch please.",
]  # fmt: skip
FRAME_S = 0.02
TARGET_P95_MS = 200


@dataclass
class Utterance:
    text: str
    frames: list[bytes]
    first: int
    last: int

    @classmethod
    def of(cls, text: str) -> Utterance:
        frames = frames_of(speech_pcm(text))
        return cls(text, frames, first_voiced_frame(frames), last_voiced_frame(frames))


@dataclass
class Sample:
    """One call's measures."""

    transport: str
    backchannel: str
    interruption: str
    at_s: float
    """When the interruption was due, after the greeting's first audible frame."""
    stop_ms: float | None = None
    interrupted_ms: float | None = None
    """Onset -> the ``bot-interrupted`` message (browser transports: a phone has no data channel)."""
    missed: bool = False
    greeting_over: bool = False
    """No agent audio in the 300 ms before the interruption nor after it: the greeting had ended (not
    a barge-in: left out). A pause between two of its sentences is not that: the next one is stopped."""
    false_interruption: bool = False
    hold_ms: float | None = None
    heard: str = ""
    """The caller turns stored (``|`` between them)."""
    barge_ins: list[str] = field(default_factory=list)
    """The greeting's stored ``barge_ins`` (outcome:reason)."""
    note: str = ""


@dataclass
class Result:
    transport: str
    samples: list[Sample] = field(default_factory=list)

    @property
    def measured(self) -> list[Sample]:
        return [s for s in self.samples if not s.greeting_over and not s.note]

    def values(self, name: str) -> list[float]:
        """``name`` of the measured calls; the interruption's figures only where the backchannel had
        not already cut the greeting off (then there was no greeting left to interrupt)."""
        samples = self.measured
        if name in ("stop_ms", "interrupted_ms"):
            samples = [s for s in samples if not s.false_interruption]
        return [float(v) for s in samples if (v := getattr(s, name)) is not None]


def _longest_gap(times: list[float], start: float, end: float) -> float:
    """The longest stretch in [start, end] without an audible agent frame arriving, in ms."""
    inside = [t for t in times if start <= t <= end]
    edges = [start, *inside, end]
    return 1000 * max(b - a for a, b in itertools.pairwise(edges))


async def one_call(server: BenchServer, agent_id: str, transport: str, rng: random.Random,
                   sip: tuple[str, int], known: set[str]) -> Sample:  # fmt: skip
    backchannel = Utterance.of(rng.choice(BACKCHANNELS))
    interruption = Utterance.of(rng.choice(INTERRUPTIONS))
    sample = Sample(transport, backchannel.text, interruption.text, at_s=rng.uniform(3.5, 5.5))
    call: Call
    if transport == "sip_trunk":
        call = SipCall(sip, NUMBER)
    else:
        info = server.web_call(agent_id, transport=transport)
        call = WSCall(info) if transport == "websocket" else RTCCall(info)
    call_id = ""
    try:
        await call.open()
        call_id = await sip_call_id(server, known) if transport == "sip_trunk" else str(info["id"])
        if not await call.wait_until(lambda: bool(call.audio), 30):
            sample.note = "no greeting"
            return sample
        greeting_at = call.audio[0]

        # 1. the backchannel
        await asyncio.sleep(max(0.0, greeting_at + 1.0 - time.monotonic()))
        call.speak(backchannel.frames, backchannel.last, voiced_from=backchannel.first)
        await call.wait_until(lambda: call.mark_sent_at is not None or call.ended(), 10)
        bc_onset, bc_end = call.onset_sent_at, call.mark_sent_at
        if bc_onset is None or bc_end is None:
            sample.note = "the call ended during the backchannel"
            return sample
        await asyncio.sleep(max(0.0, bc_end + 1.5 - time.monotonic()))
        sample.hold_ms = _longest_gap(call.audio, bc_onset, bc_end + 1.5)

        # 2. the interruption
        await asyncio.sleep(max(0.0, greeting_at + sample.at_s - time.monotonic()))
        call.speak(interruption.frames, interruption.last, voiced_from=interruption.first)
        await call.wait_until(lambda: call.mark_sent_at is not None or call.ended(), 10)
        onset, end = call.onset_sent_at, call.mark_sent_at
        if onset is None or end is None:
            sample.note = "the call ended during the interruption"
            return sample
        await asyncio.sleep(max(0.0, end + UNTIL_S - time.monotonic()))
        if transport != "sip_trunk":
            with contextlib.suppress(TimeoutError, ConnectionError):
                stamp, _ = await call.wait_for("bot-interrupted", since=onset, timeout=2.0)
                sample.interrupted_ms = 1000 * (stamp - onset)
        await asyncio.sleep(1.0)  # the caller's turn is transcribed and stored
    finally:
        await call.close()
    _judge(sample, server, call_id, call.audio, onset=onset, end=end)
    return sample


def _monotonic(iso: str) -> float:
    """A stored wall-clock time on this machine's monotonic clock (the server runs on the same clock)."""
    wall = dt.datetime.fromisoformat(iso).timestamp()
    return wall - (time.time() - time.monotonic())


def _judge(
    sample: Sample, server: BenchServer, call_id: str, audio: list[float], *, onset: float, end: float
) -> None:
    """What the server stored, and what the caller heard until the agent's next reply began.

    The greeting (the first agent turn) must have been cut off (else: missed), and no caller turn may
    have begun before the interruption (the backchannel would have become a turn: a false
    interruption). Audio counts as the greeting's until the next agent turn started (its reply began
    before its first frame was sent): the interruption may itself end a turn at a pause ("No, no, |
    the other branch"), whose answer is no part of the barge-in.
    """
    turns: list[dict[str, Any]] = []
    for _ in range(50):  # the session stores the last turns as the call ends
        record = server.get_call(call_id)
        turns = record.get("transcript") or []
        if record.get("status") in ("ended", "failed") and any(t["role"] == "user" for t in turns):
            break
        time.sleep(0.1)
    agents = [t for t in turns if t["role"] == "agent"]
    users = [t for t in turns if t["role"] == "user"]
    greeting = agents[0] if agents else None
    sample.missed = greeting is None or not greeting["interrupted"]
    sample.false_interruption = any(_monotonic(t["started_at"]) < onset - 0.5 for t in users)
    sample.heard = " | ".join(str(t["text"]) for t in users)
    if greeting is not None:
        sample.barge_ins = [f"{b['outcome']}:{b['reason']}" for b in greeting.get("barge_ins") or []]
    later = [_monotonic(t["started_at"]) for t in agents[1:] if _monotonic(t["started_at"]) > onset]
    until = min([end + UNTIL_S, *later])
    heard = [t for t in audio if onset <= t < until]
    if not heard and not any(onset - 0.3 <= t <= onset for t in audio):
        sample.greeting_over = True  # the agent was silent, and stayed so: nothing to interrupt
    sample.stop_ms = 1000 * (max(heard) + FRAME_S - onset) if heard else 0.0


# ---------------------------------------------------------------------------------------------- report


def _pct(n: int, total: int) -> str:
    return f"{n}/{total} ({100 * n / total:.1f}%)" if total else "-"


def _cells(values: list[float]) -> str:
    if not values:
        return "- | - | -"
    return f"{fmt_ms(percentile(values, 50))} | {fmt_ms(percentile(values, 95))} | {fmt_ms(max(values))}"


def report(results: list[Result], machine: Machine, command: str, wall_s: float) -> str:
    counts = "; ".join(f"{LABELS[r.transport]}: {len(r.measured)} calls measured of {len(r.samples)}"
                       for r in results)  # fmt: skip
    rows = [
        "| measure | " + " | ".join(f"{LABELS[r.transport]} p50 | p95 | max" for r in results) + " |",
        "| --- |" + " --- | --- | --- |" * len(results),
        "| **barge-in stop at the client (ms): interruption's onset -> end of the agent's last frame** "
        "(calls without a false interruption) | "
        + " | ".join(_cells(r.values("stop_ms")) for r in results)
        + " |",
        "| onset -> `bot-interrupted` message (ms; a phone has no data channel) | "
        + " | ".join(_cells(r.values("interrupted_ms")) for r in results)
        + " |",
        "| backchannel: longest gap in the agent's audio (ms, the hold) | "
        + " | ".join(_cells(r.values("hold_ms")) for r in results)
        + " |",
    ]
    counts_rows = [
        "| count | " + " | ".join(LABELS[r.transport] for r in results) + " |",
        "| --- |" + " --- |" * len(results),
        "| missed interruptions (the stored greeting turn is not `interrupted`) | "
        + " | ".join(_pct(sum(s.missed for s in r.measured), len(r.measured)) for r in results)
        + " |",
        "| false interruptions (the backchannel became a caller turn) | "
        + " | ".join(_pct(sum(s.false_interruption for s in r.measured), len(r.measured)) for r in results)
        + " |",
        "| interruptions when the agent was silent before and after (left out) | "
        + " | ".join(str(sum(s.greeting_over for s in r.samples)) for r in results)
        + " |",
    ]
    verdicts = []
    for r in results:
        stops = r.values("stop_ms")
        if stops:
            p95 = percentile(stops, 95)
            met = "met" if p95 <= TARGET_P95_MS else "not met"
            verdicts.append(f"{LABELS[r.transport]}: barge-in stop p95 <= {TARGET_P95_MS} ms **{met}** "
                            f"({fmt_ms(p95)} ms).")  # fmt: skip
    about = (
        f"{counts} ({wall_s:.0f} s wall time). One `callgate serve` subprocess (default engines: Silero "
        "VAD, faster-whisper tiny.en, piper; its SIP trunk on loopback), the demo clinic flow; calls take "
        "the transports in turn (the phone: a SIP UAC sending G.711 μ-law RTP at 8 kHz, as a carrier "
        "would). In each call the client says a backchannel ~1 s into the agent's greeting, then "
        "interrupts it at a seeded moment 3.5-5.5 s in (piper speech, a microphone streamed in real "
        "time with a -60 dBFS room between utterances). **Barge-in stop = arrival of the last audible "
        "(> -60 dBFS) agent frame after the interruption's onset + its 20 ms - the moment the client "
        "handed over the interruption's first voiced (> -40 dBFS) frame**; frames are counted until the "
        "agent's next turn began (as stored; an interruption with a pause in it may be answered in part), "
        "at most 1 s after its last voiced frame. The call's stored record judges it: the greeting turn "
        "must be `interrupted` (else: missed), and no caller turn may begin before the interruption (a "
        "backchannel that became a turn is a false interruption). WebRTC: aiortc peer, agent "
        "audio taken at RTP arrival; the phone: at RTP packet arrival. A client's own playback buffer "
        "comes on top: callgate's web SDK plays WebSocket audio with 60 ms queued (`prebufferMs`), a "
        "browser's WebRTC jitter buffer holds a few tens of ms, a carrier and a handset have their own; "
        "the server holds its audio at the first 40 ms of caller speech (`interruption_hold_ms`), and "
        "`bot-interrupted` (which flushes the SDK's queue) comes once the interruption is confirmed. "
        "No priority boosts."
    )
    return "\n".join(
        [f"Measured {machine.line()}.", "", "```", command, "```", "", about, "", *rows, "",
         *counts_rows, "", " ".join(verdicts)]
    )  # fmt: skip


# ---------------------------------------------------------------------------------------------- main


async def main_async(args: argparse.Namespace) -> int:
    machine = Machine()
    print("synthesising caller speech (cached after the first run)...")
    for text in [*BACKCHANNELS, *INTERRUPTIONS]:
        Utterance.of(text)
    use_loopback()
    rng = random.Random(args.seed)
    results = {t: Result(t) for t in TRANSPORTS}
    started = time.monotonic()
    sip = ("127.0.0.1", free_port())
    env = {"CALLGATE_SIP_LISTEN": f"{sip[0]}:{sip[1]}", "CALLGATE_RTP_PORTS": "48000-48999"}
    known: set[str] = set()
    with BenchServer(env=env) as server:
        turn_detection = {"turn_detection": json.loads(args.turn_detection)} if args.turn_detection else {}
        agent_id = server.create_agent(
            {"name": "barge-in-bench", "flow": demo_flow_body(), "silence_timeout_s": 120,
             "max_duration_s": 600, **turn_detection}
        )  # fmt: skip
        route_number(server, NUMBER, agent_id)
        print(f"server pid {server.pid} on {server.url}, SIP on {sip[0]}:{sip[1]}")
        for n in range(args.calls):
            for transport in TRANSPORTS if n % 2 == 0 else TRANSPORTS[::-1]:
                sample = await one_call(server, agent_id, transport, rng, sip, known)
                results[transport].samples.append(sample)
                flags = " FALSE INTERRUPTION" if sample.false_interruption else ""
                flags += " MISSED" if sample.missed else ""
                flags += " (greeting over)" if sample.greeting_over else ""
                print(
                    f"  {LABELS[transport]} call {n}: {sample.backchannel!r} hold {fmt_ms(sample.hold_ms)} "
                    f"ms; {sample.interruption!r} at {sample.at_s:.1f} s -> stop {fmt_ms(sample.stop_ms)} "
                    f"ms, bot-interrupted {fmt_ms(sample.interrupted_ms)} ms; stored {sample.heard!r} "
                    f"{','.join(sample.barge_ins)}{flags} {sample.note}"
                )
    wall_s = time.monotonic() - started
    command = "python bench/barge_in.py" + (f" --calls {args.calls}" if args.calls != 20 else "")
    if args.turn_detection:
        command += f" --turn-detection '{args.turn_detection}'"
    text = report(list(results.values()), machine, command, wall_s)
    print()
    print(text)
    print()
    for r in results.values():
        stops = r.values("stop_ms")
        print(
            f"RESULT barge_in transport={r.transport} calls={len(r.samples)} measured={len(r.measured)} "
            f"missed={sum(s.missed for s in r.measured)} "
            f"false_interruptions={sum(s.false_interruption for s in r.measured)} "
            f"stop_p50_ms={percentile(stops, 50) if stops else -1:.0f} "
            f"stop_p95_ms={percentile(stops, 95) if stops else -1:.0f}"
        )
    if args.write and args.turn_detection:
        print("\n--turn-detection: BENCHMARKS.md not updated (its figures are the defaults')")
    elif args.write:
        if min(len(r.measured) for r in results.values()) < 20:
            print("\nfewer than 20 measured calls per transport: BENCHMARKS.md not updated")
        else:
            write_section(SECTION, text)
            print(f"\nBENCHMARKS.md: section '{SECTION}' updated")
    return 0 if all(r.measured for r in results.values()) else 1


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=20, help="calls per transport (default 20)")
    parser.add_argument("--seed", type=int, default=15, help="seed of the lines and moments (default 15)")
    parser.add_argument(
        "--turn-detection", default="", metavar="JSON",
        help="the agent's turn_detection (a JSON object, e.g. '{\"semantic\": true}'); default: the "
        "server's defaults (BENCHMARKS.md is not written)",
    )  # fmt: skip
    parser.add_argument("--no-write", dest="write", action="store_false", help="do not update BENCHMARKS.md")
    args = parser.parse_args()
    run_main(lambda: main_async(args))


if __name__ == "__main__":
    main()
