"""Speech for tests: real recordings made with a TTS engine and sox."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.support.browser import make_speech_wav, read_wav

BOOKING = "I would like to book an appointment for tomorrow at three pm."


def speech_pcm(text: str, tmp: Path, *, engine: str = "piper") -> bytes:
    wav = make_speech_wav(
        text,
        tmp / f"{abs(hash(text))}.wav",
        rate=16000,
        engine=engine,  # type: ignore[arg-type]
        lead_silence_s=0.2,
        tail_silence_s=0.0,
    )
    samples, _ = read_wav(wav)
    return (np.clip(samples, -1, 1) * 32767).astype(np.int16).tobytes()
