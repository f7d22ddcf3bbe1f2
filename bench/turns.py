"""Turn-taking benchmark: when does the caller's turn end, and what stops the agent?

Runs callgate's conversation pipeline in this process with the real Silero VAD and (for ``semantic``)
the real Smart Turn v3 model, on a fixed, versioned set of caller utterances (:data:`CORPUS`, version
:data:`CORPUS_VERSION`) synthesised at run time with piper (joe) and espeak-ng voices (cached on disk)
plus seeded noise bursts, and reports three configurations side by side:

* ``before``: the turn-taking before issue 15 (barge-in after 250 ms of speech, no backchannels, no
  hang-over cut, punctuation-based early end at 250 ms);
* ``silence``: the defaults: silence endpointing (a finished sentence ends the turn at a 450 ms pause)
  with the new barge-in (hold at 40 ms, resume on noise or a backchannel) and the hang-over cut;
* ``semantic``: the same plus Smart Turn v3 asked at a 150 ms pause (max wait 1500 ms).

STT is an oracle (the known words of the audio heard so far, with Whisper's final full stop, after
150 ms): this measures turn-taking, not recognition. Figures: endpointing (true end of voice -> the
turn-end decision) p50/p95 on finished turns; false cut-ins (a turn ended inside a mid-sentence pause);
false interruptions (agent cut off by a backchannel or noise) and holds that resumed; missed
interruptions; barge-in stop (true speech onset -> the end of the last agent frame sent; a client's own
playback buffer comes on top).

    python bench/turns.py [--concurrency 4] [--limit N] [--no-write]
    python bench/turns.py --twice   # a caller who pauses mid-sentence twice: the adaptive early end
    python bench/turns.py --short-sounds   # short room sounds over the agent: holds at 60 and 40 ms
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import hashlib
import itertools
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _server import CACHE_DIR, Machine, fmt_ms, percentile, speech_pcm, write_section
from callgate.clock import SystemClock
from callgate.pipeline.frames import BotInterrupted, UserStoppedSpeaking
from callgate.pipeline.interfaces import STT, STTCapabilities, Transcript
from callgate.pipeline.options import PipelineOptions
from callgate.pipeline.pipeline import ConversationPipeline
from callgate.providers.fake import FakeAgent, FakeTTS, RecordingOutput, ScriptedReply

CORPUS_VERSION = 1
RATE = 16000
VOICES = ["piper", "en-us", "en-gb", "en-us+f3", "en-gb-x-rp", "en-us+m3"]
_FINISHED = [
    "I would like to book an appointment for tomorrow.", "What are your opening hours on Saturday?",
    "Can I speak to someone about my bill?", "I need to cancel my reservation.",
    "My order number is four five six seven.", "Do you have any tables free tonight?",
    "I think there is a mistake on my invoice.", "Could you send me the details by email?",
    "I am calling about the job advert.", "Is the pharmacy open on Sunday?",
    "We are a party of four people.", "Please change the delivery address.",
    "I lost my card this morning.", "How much does the basic plan cost?",
    "Thanks, that is all I needed.", "My name is Sarah Johnson.",
    "I want to move my appointment to next week.", "Where can I park when I arrive?",
    "The heating in my flat is not working.", "Can you repeat the last part please?",
]  # fmt: skip
_SHORT = [
    "Tomorrow.", "Yes.", "No.", "At three pm.", "Friday morning.", "Two people.", "That's right.",
    "Next Tuesday.", "Half past ten.", "Sure, go ahead.", "Not really.", "Johnson.",
]  # fmt: skip
_PAUSED = [
    ("I would like to book for", "next Tuesday afternoon."),
    ("My account number is", "seven seven three one."),
    ("I was wondering if um", "you deliver on weekends."),
    ("Can you tell me", "when the doctor is free?"),
    ("I need an appointment", "for my daughter next week."),
    ("So the problem is that", "the app keeps crashing."),
    ("I'd like to change", "the time of my booking."),
    ("We arrive on", "the twelfth of March."),
    ("Is it possible to", "pay by bank transfer?"),
    ("The reason I'm calling is", "my parcel never arrived."),
    ("I think I'll take", "the larger room."),
    ("My email is", "sarah at example dot com."),
    ("Could I um", "speak to the manager please?"),
    ("It was delivered on", "Monday but it was broken."),
    ("I want to ask about", "the opening hours."),
    ("Let me check", "yes I have it here."),
]  # fmt: skip
_BACKCHANNELS = ["Uh-huh.", "Yeah.", "Okay.", "Right.", "Mm-hmm.", "Yes.", "Sure.", "I see."]
_INTERRUPTIONS = [
    "Wait, I need to change the time.", "Sorry, that's not what I asked.", "No, I said Thursday.",
    "Hold on, can you repeat that?", "Actually I want to cancel instead.", "Stop, that's the wrong address.",
    "Excuse me, I have a question.", "No no, the other branch please.",
]  # fmt: skip
GREETING = (
    "Thank you for calling the Maple Street Clinic. Our opening hours are eight in the morning until six "
    "in the evening on weekdays, and nine until one on Saturdays. How can I help you today?"
)


@dataclass(frozen=True)
class Sample:
    kind: str  # finished | short | paused | backchannel | noise | interruption
    parts: tuple[str, ...]
    voice: str
    pause_ms: int = 0
    seed: int = 0

    @property
    def over_agent(self) -> bool:
        return self.kind in ("backchannel", "noise", "interruption")


def corpus() -> list[Sample]:
    """The fixed set: 40 finished sentences, 24 short answers, 32 with a pause of 300-800 ms, 16
    backchannels, 12 noise bursts and 16 real interruptions (each text in two voices)."""
    out: list[Sample] = []
    for i, text in enumerate(_FINISHED):
        out += [Sample("finished", (text,), VOICES[(2 * i + k) % len(VOICES)]) for k in range(2)]
    for i, text in enumerate(_SHORT):
        out += [Sample("short", (text,), VOICES[(2 * i + k + 1) % len(VOICES)]) for k in range(2)]
    for i, parts in enumerate(_PAUSED):
        out += [
            Sample("paused", parts, VOICES[(2 * i + k) % len(VOICES)], pause_ms=300 + (i * 2 + k) * 500 // 31)
            for k in range(2)
        ]
    for i, text in enumerate(_BACKCHANNELS):
        out += [Sample("backchannel", (text,), VOICES[(2 * i + k) % len(VOICES)]) for k in range(2)]
    out += [Sample("noise", (), "", seed=i) for i in range(12)]
    for i, text in enumerate(_INTERRUPTIONS):
        out += [Sample("interruption", (text,), VOICES[(2 * i + k + 3) % len(VOICES)]) for k in range(2)]
    return out


def espeak_pcm(text: str, voice: str) -> bytes:
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    path = CACHE_DIR / f"espeak-{hashlib.sha256(f'{voice}|{text}'.encode()).hexdigest()[:16]}.s16"
    if path.exists():
        return path.read_bytes()
    if shutil.which("espeak-ng") is None or shutil.which("sox") is None:
        raise SystemExit("espeak-ng and sox are needed (apt-get install espeak-ng sox)")
    wav = subprocess.run(["espeak-ng", "-v", voice, "--stdout", text], capture_output=True, check=True).stdout
    pcm = subprocess.run(
        ["sox", "-t", "wav", "-", "-t", "raw", "-r", str(RATE), "-e", "signed", "-b", "16", "-c", "1", "-"],
        input=wav, capture_output=True, check=True,
    ).stdout  # fmt: skip
    path.write_bytes(pcm)
    return pcm


def _trim(pcm: bytes, threshold: float = 300.0) -> bytes:
    """Cut the synthesiser's leading and trailing silence, so the true voice bounds are known."""
    a = np.frombuffer(pcm, "<i2").astype(np.float32)
    voiced = np.flatnonzero(np.abs(a) > threshold)
    return pcm[2 * int(voiced[0]) : 2 * int(voiced[-1] + 1)] if voiced.size else pcm


def noise_burst(seed: int) -> bytes:
    """A cough-like burst: 120-300 ms of shaped noise."""
    rng = np.random.default_rng(1000 + seed)
    n = int(RATE * (0.12 + 0.18 * rng.random()))
    env = np.sin(np.linspace(0, np.pi, n)) ** 2
    burst = rng.standard_normal(n) * env * 6000 * (0.5 + rng.random())
    return np.clip(burst, -32767, 32767).astype("<i2").tobytes()


SOUNDS_VERSION = 1
_SOUND_KINDS = ("click", "lip smack", "tap", "knock", "mic bump", "keyboard", "burst", "breath")


def short_sound(kind: str, seed: int) -> bytes:
    """``--short-sounds``: one seeded non-speech sound of a room, shorter or quieter than the corpus's
    cough-like bursts (a click, a lip smack, a tap on the desk, a knock, a bump on the microphone,
    typing, a 20-100 ms noise burst, a breath)."""
    rng = np.random.default_rng(5000 + 97 * _SOUND_KINDS.index(kind) + seed)
    peak = 10 ** ((-30 + 24 * rng.random()) / 20) * 32767  # -30 to -6 dBFS

    def ring(f: float, tau_ms: float, ms: float) -> np.ndarray:
        t = np.arange(int(RATE * ms / 1000)) / RATE
        return np.sin(2 * np.pi * f * t + rng.random() * 6.28) * np.exp(-t * 1000 / tau_ms)

    def hit(ms: float, tau_ms: float, colour: float = 1.0) -> np.ndarray:
        n = int(RATE * ms / 1000)
        x = rng.standard_normal(n) * np.exp(-np.arange(n) / RATE * 1000 / tau_ms)
        return x if colour >= 1 else np.convolve(x, np.ones(int(1 / colour)) / int(1 / colour), "same")

    if kind == "click":
        x = hit(6, 0.8)
    elif kind == "lip smack":
        x = hit(20, 4) * 0.5 + ring(2000 + 1500 * rng.random(), 4, 20)
    elif kind == "tap":
        x = ring(150 + 1200 * rng.random(), 5 + 25 * rng.random(), 120) + hit(120, 2)
    elif kind == "knock":
        one = lambda: ring(120 + 400 * rng.random(), 8 + 20 * rng.random(), 90) + hit(90, 3, 0.25)  # noqa: E731
        gap = int(RATE * (0.08 + 0.08 * rng.random()))
        x = np.concatenate([np.concatenate([one(), np.zeros(gap)]) for _ in range(2 + int(rng.random() * 2))])
    elif kind == "mic bump":
        x = ring(40 + 80 * rng.random(), 15 + 25 * rng.random(), 100) + hit(100, 6, 0.1)
    elif kind == "keyboard":
        x = np.zeros(RATE)
        at = 0
        while at < RATE - 1600:
            k = hit(15, 1.5) + ring(3000 + 2000 * rng.random(), 2, 15) * 0.5
            x[at : at + k.size] += k * (0.5 + 0.5 * rng.random())
            at += int(RATE * (0.08 + 0.15 * rng.random()))
    elif kind == "burst":
        n = int(RATE * (0.02 + 0.08 * rng.random()))
        x = rng.standard_normal(n) * np.sin(np.linspace(0, np.pi, n)) ** 2
    else:  # breath: band-limited noise with a slow envelope, quiet
        n = int(RATE * (0.25 + 0.25 * rng.random()))
        x = np.convolve(rng.standard_normal(n), np.ones(6) / 6, "same") * np.sin(np.linspace(0, np.pi, n))
        peak /= 8
    x = x / (np.max(np.abs(x)) or 1.0) * peak
    return np.clip(x, -32767, 32767).astype("<i2").tobytes()


def audio_of(sample: Sample) -> tuple[bytes, list[tuple[float, str]]]:
    """The sample's audio and, per part, (end of its voice in s, its words)."""
    if sample.kind == "noise":
        return noise_burst(sample.seed), []
    pcm, ends = b"", []
    for i, text in enumerate(sample.parts):
        if i:
            pcm += bytes(2 * RATE * sample.pause_ms // 1000)
        voice = speech_pcm(text) if sample.voice == "piper" else espeak_pcm(text, sample.voice)
        pcm += _trim(voice)
        ends.append((len(pcm) / 2 / RATE, text))
    return pcm, ends


class OracleSTT(STT):
    """The words of the parts heard by now (Whisper ends each guess with a full stop), after 150 ms."""

    def __init__(self) -> None:
        self.capabilities = STTCapabilities(sample_rate=RATE)
        self.parts: list[tuple[float, str]] = []  # (wall time the part's voice ended, words)

    async def transcribe(self, pcm16: bytes, *, language: str = "en", prompt: str = "") -> Transcript:
        asked = time.monotonic()
        await asyncio.sleep(0.15)
        words = " ".join(text.rstrip(".?!") for end, text in self.parts if end <= asked + 0.02)
        if words and len([p for p in self.parts if p[0] <= asked + 0.02]) == len(self.parts):
            words = " ".join(t for _, t in self.parts)
        elif words:
            words += "."
        return Transcript(text=words)


MODES: dict[str, PipelineOptions] = {
    "before": PipelineOptions(
        interruption_hold_ms=250,
        held_pause_ms=0,
        interruption_min_speech_ms=250,
        backchannels=(),
        hangover_cut_db=0,
        transcribe_pause_ms=0,
        early_end_silence_ms=250,
        finished_sentence_silence_ms=0,
        open_phrase_wait=False,
        continue_window_ms=0,
    ),
    "silence": PipelineOptions(),
    "semantic": PipelineOptions(semantic=True, early_end_silence_ms=150, max_wait_ms=1500),
}


@dataclass
class Outcome:
    sample: Sample
    endpoint_ms: float | None = None
    cut_in: bool = False
    taken_back: bool = False
    """After a cut-in: the caller went on, the answer was taken back and all the words answered."""
    heard_ms: float = 0.0
    """After a cut-in: agent audio sent between the cut and the end of the caller's continuation."""
    interrupted: bool = False
    resumed: bool = False
    stop_ms: float | None = None


class _Call:
    """One in-process call: the pipeline with the real VAD (and model), the oracle STT, a fake agent
    answering "Okay." and a fake TTS; caller audio is pushed in real time, 20 ms at a time."""

    FRAME = 2 * RATE // 50

    def __init__(
        self, options: PipelineOptions, vad: Any, model: Any, *, agent_delay_ms: float, greeting: str | None
    ) -> None:
        clock = SystemClock()
        self.stt = OracleSTT()
        answer = ScriptedReply("Okay.", first_token_delay=agent_delay_ms / 1000.0)
        self.agent = FakeAgent(clock, [answer] * 6, greeting=greeting)
        self.output = RecordingOutput(clock)
        tts = FakeTTS(clock, sample_rate=RATE, ms_per_char=60, first_chunk_delay=0.05, chunk_ms=200)
        self.pipeline = ConversationPipeline(
            vad=vad, stt=self.stt, agent=self.agent, tts=tts, output=self.output, clock=clock,
            options=options, end_of_turn=model,
        )  # fmt: skip

    async def push(self, audio: bytes) -> None:
        t0, frame = time.monotonic(), self.FRAME
        for i, offset in enumerate(range(0, len(audio), frame)):
            await asyncio.sleep(max(0.0, t0 + i * 0.02 - time.monotonic()))
            self.pipeline.push_audio(audio[offset : offset + frame].ljust(frame, b"\0"))

    async def say(self, pcm: bytes, ends: list[tuple[float, str]]) -> float:
        """The utterance, then 2.5 s of silence; returns when its audio started."""
        t0 = time.monotonic()
        self.stt.parts = [(t0 + end, text) for end, text in ends]
        await self.push(pcm)
        await self.push(bytes(2 * RATE * 25 // 10))
        return t0


async def run_sample(
    sample: Sample, options: PipelineOptions, vad: Any, model: Any, agent_delay_ms: float = 200.0
) -> Outcome:
    pcm, ends = audio_of(sample)
    call = _Call(
        options, vad, model, agent_delay_ms=agent_delay_ms, greeting=GREETING if sample.over_agent else None
    )
    pipeline, output, agent = call.pipeline, call.output, call.agent
    await pipeline.start()
    started = time.monotonic()
    try:
        await call.push(bytes(2 * RATE * 3 // 10))
        if sample.over_agent:
            while not output.audio and time.monotonic() - started < 5:
                await call.push(bytes(call.FRAME))
            await call.push(bytes(2 * RATE * 8 // 10))
        t0 = await call.say(pcm, ends)
    finally:
        await pipeline.stop()
    out = Outcome(sample)
    stops = [t for t in output.times_of(UserStoppedSpeaking) if t >= t0]
    if not sample.over_agent:
        if stops:
            first = stops[0]
            if sample.kind == "paused" and first < t0 + ends[0][0] + sample.pause_ms / 1000 - 0.01:
                out.cut_in = True
                out.taken_back = bool(agent.taken_back)
                end = next((t for t in stops if t > first), float("inf"))
                out.heard_ms = 20.0 * sum(1 for t, _ in output.audio if first <= t < end)
            else:
                out.endpoint_ms = (first - (t0 + ends[-1][0])) * 1000
        return out
    out.interrupted = bool([t for t in output.times_of(BotInterrupted) if t >= t0])
    out.resumed = pipeline.metrics.barge_in_resumes > 0
    sent = [t for t, _ in output.audio if t >= t0]
    for a, b in zip(sent, [*sent[1:], None], strict=True):
        if b is None or b - a > 0.05:
            out.stop_ms = (a + 0.02 - t0) * 1000
            break
    return out


def _room(ms: float, seed: int) -> bytes:
    """A quiet room: noise at about -60 dBFS."""
    n = int(RATE * ms / 1000)
    return (np.random.default_rng(seed).standard_normal(n) * 33).astype("<i2").tobytes()


async def run_sound(pcm: bytes, seed: int, options: PipelineOptions, vad: Any) -> tuple[int, bool, float]:
    """``--short-sounds``: one sound in a quiet room ~1 s into the agent's greeting; returns the holds
    it caused, whether it cut the agent off, and the longest gap in the agent's audio around it."""
    call = _Call(options, vad, None, agent_delay_ms=0.0, greeting=GREETING)
    pipeline, output = call.pipeline, call.output
    await pipeline.start()
    started = time.monotonic()
    try:
        await call.push(_room(300, seed))
        while not output.audio and time.monotonic() - started < 5:
            await call.push(_room(20, seed + 1))
        await call.push(_room(800, seed + 2))
        t0 = time.monotonic()
        a = np.frombuffer(pcm, "<i2").astype(np.int32)
        room = np.frombuffer(_room(len(a) / RATE * 1000, seed + 3), "<i2").astype(np.int32)
        await call.push(np.clip(a + room[: a.size], -32767, 32767).astype("<i2").tobytes())
        await call.push(_room(1500, seed + 4))
        t1 = time.monotonic()
    finally:
        await pipeline.stop()
    sent = [t for t, _ in output.audio if t0 - 0.1 <= t <= t1]
    gap = max((b - a - 0.02 for a, b in itertools.pairwise(sent)), default=0.0)
    interrupted = bool([t for t in output.times_of(BotInterrupted) if t >= t0])
    return pipeline.metrics.barge_in_holds, interrupted, max(0.0, gap) * 1000


async def short_sounds(args: argparse.Namespace, vad: Any) -> int:
    """``--short-sounds``: what holding the agent at 40 ms of caller sound instead of 60 costs: a
    seeded set of short room sounds, each over the agent, at each ``interruption_hold_ms``; prints
    the counts (never writes BENCHMARKS.md)."""
    sounds = [(k, i) for k in _SOUND_KINDS for i in range(args.sounds_per_kind)]
    gate = asyncio.Semaphore(args.concurrency)

    async def one(kind: str, i: int, options: PipelineOptions) -> tuple[str, int, bool, float]:
        async with gate:
            holds, cut, gap = await run_sound(short_sound(kind, i), 31 * i, options, vad)
            return kind, holds, cut, gap

    for hold in args.hold_ms:
        options = dataclasses.replace(MODES["silence"], interruption_hold_ms=hold)
        got = await asyncio.gather(*(one(k, i, options) for k, i in sounds))
        for kind in _SOUND_KINDS:
            mine = [g for g in got if g[0] == kind]
            print(
                f"RESULT sounds hold_ms={hold} kind={kind.replace(' ', '_')} n={len(mine)} "
                f"held={sum(g[1] > 0 for g in mine)} cut_off={sum(g[2] for g in mine)} "
                f"longest_gap_ms={max(g[3] for g in mine):.0f}",
                flush=True,
            )
        held = [g for g in got if g[1] > 0]
        gaps = [g[3] for g in held]
        print(
            f"RESULT sounds hold_ms={hold} kind=all n={len(got)} held={len(held)} "
            f"cut_off={sum(g[2] for g in got)} gap_p50_ms={percentile(gaps, 50) if gaps else 0:.0f} "
            f"gap_max_ms={max(gaps, default=0):.0f}",
            flush=True,
        )
    return 0


async def run_twice(sample: Sample, options: PipelineOptions, vad: Any, model: Any) -> tuple[bool, bool]:
    """The same paused utterance said twice in one call, the agent answering in between: whether the
    turn ended inside the pause the first time, and the second (``--twice``)."""
    pcm, ends = audio_of(sample)
    call = _Call(options, vad, model, agent_delay_ms=200.0, greeting=None)
    await call.pipeline.start()
    cuts: list[bool] = []
    try:
        await call.push(bytes(2 * RATE * 3 // 10))
        for _ in range(2):
            t0 = await call.say(pcm, ends)
            pause_ends = t0 + ends[0][0] + sample.pause_ms / 1000 - 0.01
            cuts.append(any(t0 <= t < pause_ends for t in call.output.times_of(UserStoppedSpeaking)))
    finally:
        await call.pipeline.stop()
    return cuts[0], cuts[1]


async def twice(args: argparse.Namespace, vad: Any, model: Any) -> int:
    """``--twice``: each paused utterance said twice in one call, with and without the adaptive early
    end (``early_end_backoff_ms``); prints the counts (never writes BENCHMARKS.md)."""
    samples = [s for s in corpus() if s.kind == "paused"][: args.limit or None]
    for s in samples:
        audio_of(s)
    gate = asyncio.Semaphore(args.concurrency)

    async def one(sample: Sample, options: PipelineOptions) -> tuple[bool, bool]:
        async with gate:
            return await run_twice(sample, options, vad, model)

    for name in ("silence", "semantic"):
        for backoff in (100, 0):
            options = dataclasses.replace(MODES[name], early_end_backoff_ms=backoff)
            got = await asyncio.gather(*(one(s, options) for s in samples))
            first = sum(a for a, _ in got)
            again = sum(b for a, b in got if a)
            later = sum(b for a, b in got if not a)
            print(
                f"RESULT twice mode={name} early_end_backoff_ms={backoff} paused={len(got)} "
                f"cut_first={first} cut_again={again} cut_only_second={later}",
                flush=True,
            )
    return 0


@dataclass
class Report:
    rows: dict[str, list[Outcome]] = field(default_factory=dict)


def summary(outcomes: list[Outcome]) -> dict[str, Any]:
    ends = [o.endpoint_ms for o in outcomes if o.endpoint_ms is not None]
    paused = [o for o in outcomes if o.sample.kind == "paused"]
    false = [o for o in outcomes if o.sample.kind in ("backchannel", "noise")]
    real = [o for o in outcomes if o.sample.kind == "interruption"]
    stops = [o.stop_ms for o in real if o.stop_ms is not None]
    return {
        "turns": len(ends),
        "endpoint_p50": percentile(ends, 50) if ends else None,
        "endpoint_p95": percentile(ends, 95) if ends else None,
        "cut_ins": sum(o.cut_in for o in paused),
        "taken_back": sum(o.taken_back for o in paused),
        "heard_max": max((o.heard_ms for o in paused if o.cut_in), default=None),
        "paused": len(paused),
        "false_interruptions": sum(o.interrupted for o in false),
        "false_resumed": sum(o.resumed and not o.interrupted for o in false),
        "over_agent": len(false),
        "missed": sum(not o.interrupted for o in real),
        "real": len(real),
        "stop_p50": percentile(stops, 50) if stops else None,
        "stop_p95": percentile(stops, 95) if stops else None,
    }


async def main_async(args: argparse.Namespace) -> int:
    from callgate.providers.silero import SileroVAD
    from callgate.providers.smart_turn import SmartTurn

    vad = SileroVAD(quiet_gate_db=args.quiet_gate_db)
    vad.warm_up()
    model = SmartTurn()
    model.warm_up()
    if args.twice:
        return await twice(args, vad, model)
    if args.short_sounds:
        return await short_sounds(args, vad)
    samples = corpus()[: args.limit] if args.limit else corpus()
    if args.limit:  # a tiny run still covers every kind
        samples = [next(s for s in corpus() if s.kind == k) for k in dict.fromkeys(s.kind for s in corpus())]
    for s in samples:
        audio_of(s)  # synthesise (and cache) before timing anything
    machine = Machine()
    load0 = os.getloadavg()[0]
    results: dict[str, dict[str, Any]] = {}
    gate = asyncio.Semaphore(args.concurrency)

    async def one(sample: Sample, options: PipelineOptions) -> Outcome:
        async with gate:
            return await run_sample(sample, options, vad, model, args.agent_delay_ms)

    modes = dict(MODES)
    if args.early_end_ms is not None:
        modes["silence"] = dataclasses.replace(modes["silence"], early_end_silence_ms=args.early_end_ms)
    if args.finished_sentence_ms is not None:
        modes["silence"] = dataclasses.replace(
            modes["silence"], finished_sentence_silence_ms=args.finished_sentence_ms
        )
    for name, options in modes.items():
        outcomes = await asyncio.gather(*(one(s, options) for s in samples))
        results[name] = summary(list(outcomes))
        r = results[name]
        print(
            f"RESULT turns mode={name} endpoint_p50_ms={r['endpoint_p50'] or 0:.0f} "
            f"endpoint_p95_ms={r['endpoint_p95'] or 0:.0f} cut_ins={r['cut_ins']} paused={r['paused']} "
            f"taken_back={r['taken_back']} heard_max_ms={r['heard_max'] or 0:.0f} "
            f"false_interruptions={r['false_interruptions']} over_agent={r['over_agent']} "
            f"missed={r['missed']} real={r['real']} stop_p50_ms={r['stop_p50'] or 0:.0f} "
            f"stop_p95_ms={r['stop_p95'] or 0:.0f}",
            flush=True,
        )
    load1 = os.getloadavg()[0]
    body = render(results, len(samples), machine, args, (load0, load1))
    print(body)
    if not args.no_write and args.early_end_ms is None and args.finished_sentence_ms is None:
        # the headline is the defaults
        write_section("Turn-taking", body)
        print("\nBENCHMARKS.md: section 'Turn-taking' updated")
    return 0


def _pct(n: int, d: int) -> str:
    return f"{n}/{d} ({100.0 * n / d:.1f}%)" if d else "-"


def render(
    results: dict[str, dict[str, Any]],
    n: int,
    machine: Machine,
    args: argparse.Namespace,
    load: tuple[float, float],
) -> str:
    cols, fs_ms = list(results), args.finished_sentence_ms
    lines = [
        f"`python bench/turns.py --concurrency {args.concurrency}"
        + (f" --agent-delay-ms {args.agent_delay_ms:g}" if args.agent_delay_ms != 200 else "")
        + (f" --early-end-ms {args.early_end_ms}" if args.early_end_ms is not None else "")
        + ("" if fs_ms is None else f" --finished-sentence-ms {fs_ms}")
        + f"` — corpus v{CORPUS_VERSION}, {n} caller "
        "utterances (piper joe + espeak-ng voices, seeded noise bursts), in-process pipeline, Silero VAD "
        "and Smart Turn v3 on onnxruntime, oracle STT (150 ms). No priority boosts. "
        f"Measured {machine.line()}; load average {load[0]:.2f} at the start, {load[1]:.2f} at the end.",
        "",
        "| | " + " | ".join(cols) + " |",
        "| --- |" + " --- |" * len(cols),
    ]

    def row(label: str, fn: Any) -> None:
        lines.append(f"| {label} | " + " | ".join(fn(results[c]) for c in cols) + " |")

    row("endpointing p50 (end of voice -> turn end)", lambda r: fmt_ms(r["endpoint_p50"]))
    row("endpointing p95", lambda r: fmt_ms(r["endpoint_p95"]))
    row("false cut-ins (turn ended in a 300-800 ms pause)", lambda r: _pct(r["cut_ins"], r["paused"]))
    row("cut-ins taken back (the caller went on: all the words answered together)",
        lambda r: f"{r['taken_back']}/{r['cut_ins']}")  # fmt: skip
    row("agent audio sent at a cut-in before the caller went on, max", lambda r: fmt_ms(r["heard_max"]))
    row("false interruptions (backchannel/noise cut the agent off)",
        lambda r: _pct(r["false_interruptions"], r["over_agent"]))  # fmt: skip
    row("backchannel/noise: agent held, then resumed", lambda r: _pct(r["false_resumed"], r["over_agent"]))
    row("missed interruptions", lambda r: _pct(r["missed"], r["real"]))
    row("barge-in stop p50 (speech onset -> agent audio ends)", lambda r: fmt_ms(r["stop_p50"]))
    row("barge-in stop p95", lambda r: fmt_ms(r["stop_p95"]))
    lines += [
        "",
        "`before` is the turn-taking before issue 15 (cut off after 250 ms of speech, no backchannels, no "
        "hang-over cut, no wait on open words, words transcribed at the 250 ms early end; the finished-"
        "sentence word rules are today's); `silence` the defaults: the new barge-in and hang-over cut, "
        "silence endpointing (550 ms; the words transcribed at a 150 ms pause, the turn ended at 450 ms on a "
        "finished sentence, `finished_sentence_silence_ms`, or at 350 ms on an answer the agent expects, "
        "which this fake agent never does) with words that leave the "
        'sentence open ("I\'d like to book for", "can you tell me") letting the pause run to 1500 ms; '
        "`semantic` adds Smart Turn v3 at a 150 ms pause (done: end, unless the words are open; "
        "mid-thought: wait up to 1500 ms). `silence` and `semantic` take back an answer the caller cuts "
        "off by going on within 500 ms of the turn's end (`continue_window_ms`); `before` does not. The "
        f"fake agent starts its answer {args.agent_delay_ms:.0f} ms after the turn ends. Endpointing "
        "counts finished turns only (a cut-in is counted apart). The stop time is at the server's "
        "output; the client's playback buffer adds its depth.",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--concurrency", type=int, default=4, help="samples run at once (default 4)")
    parser.add_argument("--limit", type=int, default=0, help="a tiny run: one sample of each kind")
    parser.add_argument("--no-write", action="store_true", help="do not update BENCHMARKS.md")
    parser.add_argument(
        "--quiet-gate-db", type=float, default=6.0,
        help="Silero's quiet gate (the default 6; 0 runs the model on every window)",
    )  # fmt: skip
    parser.add_argument(
        "--twice", action="store_true",
        help="say each paused utterance twice in one call, with and without early_end_backoff_ms",
    )  # fmt: skip
    parser.add_argument(
        "--short-sounds", action="store_true",
        help=f"short room sounds over the agent (set v{SOUNDS_VERSION}): the holds at each --hold-ms",
    )  # fmt: skip
    parser.add_argument("--sounds-per-kind", type=int, default=8, help="with --short-sounds (default 8)")
    parser.add_argument(
        "--hold-ms", type=int, nargs="+", default=[60, 40],
        help="with --short-sounds: the interruption_hold_ms values compared (default 60 40)",
    )  # fmt: skip
    parser.add_argument(
        "--agent-delay-ms", type=float, default=200.0,
        help="the fake agent's time to its first word (default 200, like an LLM; 0: like a flow)",
    )  # fmt: skip
    parser.add_argument(
        "--early-end-ms", type=int, default=None, metavar="MS",
        help="the silence mode's early_end_silence_ms (default: the server's, 350); never written",
    )  # fmt: skip
    parser.add_argument(
        "--finished-sentence-ms", type=int, default=None, metavar="MS",
        help="the silence mode's finished_sentence_silence_ms (default: the server's, 450; 0: at the "
        "early end); never written",
    )  # fmt: skip
    sys.exit(asyncio.run(main_async(parser.parse_args())))


if __name__ == "__main__":
    main()
