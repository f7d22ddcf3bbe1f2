"""Backchannels heard: which short utterances over the agent does callgate take for a backchannel?

Transcribes a fixed set of utterances with the server's embedded STT (faster-whisper tiny.en, the
``WhisperSTT`` a call uses) and judges each with the call's backchannel rules (``pipeline/backchannel.py``)
the way the pipeline does over a held agent: the words first, then, for one or two words that are no
backchannel, the words heard again with the backchannels as the STT's prompt. Each text is spoken by
piper (joe) and five espeak-ng voices (``bench/turns.py``'s), and heard three ways: clean 16 kHz,
through Opus (48 kHz, 32 kbit/s, as a browser sends it over WebRTC) and through G.711 μ-law at 8 kHz (a
phone). Reports, per kind, how many let the agent go on (heard as a backchannel, or as no words at all) at
the first hearing and at the decision: for backchannels the more the better; for interruptions, short
answers and one-word utterances ("Stop.", "Hey.", "Thursday.") every one is an interruption missed. And
how often the first hearing was slow (Whisper's 30 s path) and the prompted hearing beside it let the
agent go on before it came (``SLOW_HEARING_S``): for backchannels a shorter hold, for the others a
moment of agent audio before the first hearing cuts it off.

    python bench/backchannels.py [--no-write] [--limit]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from typing import Any

import av
import numpy as np
import soxr

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _server import Machine, speech_pcm, write_section
from callgate.pipeline.backchannel import Backchannels
from callgate.pipeline.utterance import SHORT_UTTERANCE_S
from callgate.realtime.media import g711
from turns import _BACKCHANNELS, _INTERRUPTIONS, _SHORT, VOICES, _trim, espeak_pcm

ONE_WORD = ["No.", "Stop.", "Wait.", "What?", "Sorry?", "Hello?", "Thursday.", "Two.", "Hey.", "Nope."]
KINDS: dict[str, list[str]] = {
    "backchannel": _BACKCHANNELS,
    "interruption": _INTERRUPTIONS,
    "short answer": _SHORT,
    "one word": ONE_WORD,
}
RATE = 16000


def through_opus(pcm16: bytes) -> bytes:
    """Encoded by libopus at 48 kHz in 20 ms packets (voip, 32 kbit/s) and decoded again."""
    up = soxr.resample(np.frombuffer(pcm16, "<i2").astype(np.float32), RATE, 48000)
    up = np.clip(up, -32767, 32767).astype(np.int16)
    enc: Any = av.CodecContext.create("libopus", "w")
    enc.sample_rate, enc.layout, enc.format, enc.bit_rate = 48000, "mono", "s16", 32000
    enc.options = {"application": "voip"}
    dec: Any = av.CodecContext.create("opus", "r")
    dec.sample_rate, dec.layout = 48000, "mono"
    out: list[np.ndarray] = []
    for i in range(0, up.size - 960 + 1, 960):
        frame = av.AudioFrame.from_ndarray(up[i : i + 960].reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate, frame.pts = 48000, i
        for packet in enc.encode(frame):
            out += [d.to_ndarray().reshape(-1) for d in dec.decode(packet)]
    x = np.concatenate(out).astype(np.float32)
    if np.abs(x).max() <= 1.5:  # planar float from the decoder
        x *= 32767
    return np.clip(soxr.resample(x, 48000, RATE), -32767, 32767).astype("<i2").tobytes()


def through_phone(pcm16: bytes) -> bytes:
    """Down to 8 kHz, G.711 μ-law both ways, and back up to 16 kHz."""
    narrow = soxr.resample(np.frombuffer(pcm16, "<i2").astype(np.float32), RATE, 8000)
    coded = g711.decode(g711.encode(np.clip(narrow, -32767, 32767).astype("<i2").tobytes(), "PCMU"), "PCMU")
    wide = soxr.resample(np.frombuffer(coded, "<i2").astype(np.float32), 8000, RATE)
    return np.clip(wide, -32767, 32767).astype("<i2").tobytes()


PATHS = {"clean": lambda pcm: pcm, "opus": through_opus, "phone": through_phone}


async def main_async(args: argparse.Namespace) -> int:
    from callgate.providers.whisper import WhisperSTT

    stt = WhisperSTT()
    stt.warm_up()
    rules = Backchannels.for_language("en")

    def goes_on(text: str) -> bool:
        """The agent goes on: the words are a backchannel, or there are none (noise)."""
        return not text.strip() or rules.matches(text)

    machine = Machine()
    started = time.perf_counter()
    counts: dict[str, dict[str, int]] = {
        k: {"n": 0, "first": 0, "decided": 0, "slow": 0, "early": 0} for k in KINDS
    }
    changed: list[str] = []
    voices = VOICES[:2] if args.limit else VOICES
    for kind, texts in KINDS.items():
        for text in texts[:1] if args.limit else texts:
            for voice in voices:
                raw = speech_pcm(text) if voice == "piper" else _trim(espeak_pcm(text, voice))
                for path, through in PATHS.items():
                    pcm = bytes(6400) + through(raw) + bytes(6400)
                    before = stt.stats["short"]
                    first = (await stt.transcribe(pcm, language="en")).text
                    slow = stt.stats["short"] == before and len(pcm) <= 2 * RATE * SHORT_UTTERANCE_S
                    decided, again = goes_on(first), ""
                    if slow or (not decided and 0 < len(first.split()) <= 2):
                        again = (await stt.transcribe(pcm, language="en", prompt=rules.prompt)).text
                    if not decided and 0 < len(first.split()) <= 2:
                        decided = goes_on(again)
                    c = counts[kind]
                    c["n"] += 1
                    c["first"] += goes_on(first)
                    c["decided"] += decided
                    c["slow"] += slow
                    c["early"] += slow and rules.matches(again)
                    if decided != goes_on(first):
                        changed.append(f"{kind} {text!r} {voice} {path}: {first!r} -> {again!r}")
    wall = time.perf_counter() - started
    for kind, c in counts.items():
        print(
            f"RESULT backchannels kind={kind.replace(' ', '_')} n={c['n']} first={c['first']} "
            f"decided={c['decided']} slow={c['slow']} early={c['early']}",
            flush=True,
        )
    print("\n".join(changed))
    body = render(counts, machine, wall)
    print(body)
    if args.write and not args.limit:
        write_section("Backchannels heard", body)
        print("\nBENCHMARKS.md: section 'Backchannels heard' updated")
    return 0


def render(counts: dict[str, dict[str, int]], machine: Machine, wall: float) -> str:
    def pct(n: int, d: int) -> str:
        return f"{n}/{d} ({100.0 * n / d:.1f}%)" if d else "-"

    rows = [
        "| the agent goes on (a backchannel, or no words) | backchannels (more is better) | interruptions "
        "| short answers | one word |",
        "| --- | --- | --- | --- | --- |",
    ]
    for label, key in (
        ("the words as first heard", "first"),
        ("the decision (short words heard again)", "decided"),
    ):
        rows.append(f"| {label} | " + " | ".join(pct(c[key], c["n"]) for c in counts.values()) + " |")
    for label, key, of in (
        ("first hearing slow (the 30 s path)", "slow", "n"),
        ("of them, on early with the prompt", "early", "slow"),
    ):
        rows.append(f"| {label} | " + " | ".join(pct(c[key], c[of]) for c in counts.values()) + " |")
    return "\n".join(
        [
            f"Measured {machine.line()} ({wall:.0f} s).",
            "",
            "```",
            "python bench/backchannels.py",
            "```",
            "",
            "faster-whisper tiny.en (the server's embedded STT, its short window) on 8 backchannels, 8 "
            "interruptions, 12 short answers and 10 one-word utterances, each spoken by piper (joe) and five "
            "espeak-ng voices and heard clean, through Opus (48 kHz, 32 kbit/s) and through G.711 μ-law at "
            "8 kHz; judged by the English backchannel rules. The decision is the pipeline's over a held "
            "agent: one or two words that are no backchannel are transcribed again with the backchannels "
            "as Whisper's prompt. The agent goes on when the words are a backchannel or there are none. For "
            "interruptions, short answers and one-word utterances, each one that lets it go on is an "
            "interruption missed (a caller who says it again for 700 ms cuts the "
            "agent off whatever the words). A first hearing that goes to Whisper's 30 s path (~1 s here) "
            "is slow: a call then hears the words again with the prompt beside it, and if they are a "
            "backchannel the agent goes on at once, until the first hearing decides (for an interruption "
            "that means a moment of agent audio before it is cut off).",
            "",
            *rows,
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--no-write", dest="write", action="store_false", help="do not update BENCHMARKS.md")
    parser.add_argument(
        "--limit",
        action="store_true",
        help="a tiny run: the first text of each kind, two voices (never written)",
    )
    sys.exit(asyncio.run(main_async(parser.parse_args())))


if __name__ == "__main__":
    main()
