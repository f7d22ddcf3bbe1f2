"""Callers who talk, for ``bench/sessions.py --speech``: looped scripts of real speech and their scoring.

A script is ~19 s of caller audio: six utterances from the turn-taking corpus (``turns.py``: finished
sentences, short answers and sentences with a mid-sentence pause, in piper's and espeak-ng's voices), each
followed by a pause long enough for the turn to end and the agent to answer, on a -60 dBFS noise floor.
There are :data:`SCRIPTS` of them (different utterances and voices); session ``i`` plays script
``i % SCRIPTS`` in a loop from its own offset, so that the callers do not speak in step.

Scoring works from what each session recorded (``_loadgen.Session``): when its loop started, and every
final ``user-transcription`` with its arrival time. Each transcript is given to the utterance it shares
most words with among those already spoken (the latest one on a tie), so a turn cut in two at a pause
scores as one utterance; an utterance that got no transcript counts as all deleted, a transcript that
matches nothing as all inserted. Only utterances whose voice ended inside the measuring window count.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from _server import SAMPLE_RATE, noise_pcm, speech_pcm
from trunk_latency import Wer, words
from turns import _FINISHED, _PAUSED, _SHORT, VOICES, _trim, espeak_pcm

SCRIPTS = 4
FRAME_S = 0.02
GAP_S = (1.6, 1.2, 1.8, 1.3, 1.5, 1.2)
"""Silence after each utterance: the turn ends (0.25-0.55 s), the agent's short reply plays, then the
caller speaks again, sometimes over the end of it."""
NOISE_RMS = 30.0


@dataclass(frozen=True)
class Utterance:
    text: str
    start_s: float
    end_s: float


@dataclass(frozen=True)
class Script:
    pcm: bytes
    utterances: tuple[Utterance, ...]

    @property
    def seconds(self) -> float:
        return len(self.pcm) / 2 / SAMPLE_RATE


def _voice(text: str, voice: str) -> bytes:
    return _trim(speech_pcm(text) if voice == "piper" else espeak_pcm(text, voice))


def script(index: int) -> Script:
    """Script ``index`` (0 .. SCRIPTS-1): two finished sentences, two short answers and two sentences
    with a pause (300-700 ms), in three voices; ~19 s."""
    k = index % SCRIPTS
    voices = [VOICES[(k + j) % 3] for j in range(3)]  # piper, en-us, en-gb rotated: the clearer voices
    items: list[tuple[tuple[str, ...], str, int]] = [
        ((_FINISHED[k * 2],), voices[0], 0),
        ((_SHORT[k * 3],), voices[1], 0),
        (_PAUSED[k * 2], voices[2], 300 + 100 * k),
        ((_FINISHED[k * 2 + 9],), voices[1], 0),
        ((_SHORT[k * 3 + 1],), voices[0], 0),
        (_PAUSED[k * 2 + 1], voices[0], 400 + 100 * k),
    ]
    noise_floor = np.frombuffer(noise_pcm(40.0, rms=NOISE_RMS, seed=200 + k), "<i2").astype(np.int32)
    pcm = bytearray(bytes(2 * SAMPLE_RATE // 2))  # half a second before the first word
    utterances = []
    for (parts, voice, pause_ms), gap in zip(items, GAP_S, strict=True):
        start = len(pcm) / 2 / SAMPLE_RATE
        for i, part in enumerate(parts):
            if i:
                pcm += bytes(2 * SAMPLE_RATE * pause_ms // 1000)
            pcm += _voice(part, voice)
        utterances.append(Utterance(" ".join(parts), start, len(pcm) / 2 / SAMPLE_RATE))
        pcm += bytes(int(2 * SAMPLE_RATE * gap))
    n = len(pcm) // 2
    mixed = np.frombuffer(bytes(pcm), "<i2").astype(np.int32) + noise_floor[:n]
    return Script(np.clip(mixed, -32768, 32767).astype("<i2").tobytes(), tuple(utterances))


def build_scripts() -> list[Script]:
    """All scripts (synthesised once, then from the benchmark's disk cache)."""
    return [script(i) for i in range(SCRIPTS)]


def offset_frames(session_index: int, script_seconds: float) -> int:
    """Where session ``session_index`` starts its loop: spread over the script by a golden-ratio step."""
    frames = int(script_seconds / FRAME_S)
    return int((session_index * 0.6180339887 % 1.0) * frames)


# ---------------------------------------------------------------------------------------------- scoring


@dataclass
class Heard:
    """One session's record, sent by its load-generator process."""

    script: int
    loop_t0: float
    """Monotonic time at which the script's sample 0 was (or would have been) sent."""
    transcripts: list[tuple[float, str]] = field(default_factory=list)
    """Final transcripts: (arrival time, text)."""


@dataclass
class Score:
    wer: Wer = field(default_factory=Wer)
    utterances: int = 0
    missed: int = 0
    """Utterances with no transcript at all."""
    stray: int = 0
    """Transcripts that matched no utterance."""
    voice_to_text_ms: list[float] = field(default_factory=list)
    """End of an utterance's voice -> arrival of its last transcript (endpointing + STT + transport)."""


def score(heard: list[Heard], scripts: list[Script], window: tuple[float, float]) -> Score:
    """WER of the utterances whose voice ended inside ``window`` (monotonic start, end)."""
    out = Score()
    for session in heard:
        if math.isnan(session.loop_t0):
            continue  # it never sent a frame
        sc = scripts[session.script]
        period = sc.seconds
        assigned: dict[tuple[int, int], list[tuple[float, str]]] = {}
        for arrived, text in session.transcripts:
            got = set(words(text))
            best: tuple[int, float, tuple[int, int]] | None = None
            last_loop = math.floor((arrived - session.loop_t0) / period)
            for loop in (last_loop - 1, last_loop):
                for u, utt in enumerate(sc.utterances):
                    begun = session.loop_t0 + loop * period + utt.start_s
                    if begun > arrived or arrived - begun > 30:
                        continue
                    overlap = len(got & set(words(utt.text)))
                    if overlap and (best is None or (overlap, begun) > (best[0], best[1])):
                        best = (overlap, begun, (loop, u))
            if best is None:
                if window[0] <= arrived <= window[1] + 5:
                    out.stray += 1
                    out.wer.errors += len(words(text))
                continue
            assigned.setdefault(best[2], []).append((arrived, text))
        first_loop = math.floor((window[0] - session.loop_t0) / period) - 1
        last_loop = math.ceil((window[1] - session.loop_t0) / period)
        for loop in range(first_loop, last_loop + 1):
            for u, utt in enumerate(sc.utterances):
                ended = session.loop_t0 + loop * period + utt.end_s
                if not window[0] <= ended <= window[1]:
                    continue
                parts = sorted(assigned.get((loop, u), []))
                out.utterances += 1
                out.wer.add(utt.text, " ".join(text for _, text in parts))
                if parts:
                    out.voice_to_text_ms.append(1000 * (parts[-1][0] - ended))
                else:
                    out.missed += 1
    return out


def engine_wer(scripts: list[Script]) -> tuple[Wer, int]:
    """Today's engine on the scripts' utterances one at a time, in this process: the WER to keep (and
    how many utterances it took the 30 s window for)."""
    import asyncio

    from callgate.providers.whisper import WhisperSTT

    stt = WhisperSTT()
    stt.warm_up()
    wer = Wer()

    async def run() -> None:
        for sc in scripts:
            for utt in sc.utterances:
                a, b = int(utt.start_s * SAMPLE_RATE) * 2, int(utt.end_s * SAMPLE_RATE) * 2
                wer.add(utt.text, (await stt.transcribe(sc.pcm[a:b])).text)

    asyncio.run(run())
    return wer, stt.stats["fallback"]


def as_dict(h: Heard) -> dict[str, Any]:
    return {"script": h.script, "loop_t0": h.loop_t0, "transcripts": h.transcripts}


__all__ = ["SCRIPTS", "Heard", "Score", "Script", "as_dict", "build_scripts", "engine_wer", "offset_frames",
           "score", "script"]  # fmt: skip
