from __future__ import annotations

import random

import numpy as np
import pytest

from callgate.pipeline.audio import (
    SILENCE_DBFS,
    Framer,
    StreamResampler,
    array_to_pcm16,
    bytes_per_frame,
    dbfs,
    pcm16_to_array,
    resample,
    rms,
    silence,
    tone,
)


def peak_hz(pcm16: bytes, rate: int) -> float:
    samples = pcm16_to_array(pcm16).astype(np.float64)
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(samples.size)))
    return float(np.fft.rfftfreq(samples.size, 1.0 / rate)[int(np.argmax(spectrum))])


def test_bytes_array_round_trip() -> None:
    pcm = array_to_pcm16(np.array([0, 1, -1, 32767, -32768], dtype=np.int16))
    assert pcm == b"\x00\x00\x01\x00\xff\xff\xff\x7f\x00\x80"
    assert pcm16_to_array(pcm).tolist() == [0, 1, -1, 32767, -32768]


def test_float_input_is_clipped_to_full_scale() -> None:
    assert pcm16_to_array(array_to_pcm16(np.array([2.0, -2.0, 0.5]))).tolist() == [32767, -32767, 16384]


def test_odd_byte_count_is_rejected() -> None:
    with pytest.raises(ValueError, match="even"):
        pcm16_to_array(b"\x00\x00\x00")


@pytest.mark.parametrize(("src", "dst"), [(16000, 24000), (24000, 16000), (22050, 16000), (16000, 8000)])
def test_resample_keeps_duration_and_frequency(src: int, dst: int) -> None:
    pcm = tone(1000, src, freq=440.0)
    out = resample(pcm, src, dst)
    assert abs(len(out) // 2 - dst) <= 2
    assert peak_hz(out, dst) == pytest.approx(440.0, abs=2.0)


def test_resample_same_rate_is_identity() -> None:
    pcm = tone(100, 16000)
    assert resample(pcm, 16000, 16000) is pcm


def test_stream_resampler_matches_one_shot_without_boundary_clicks() -> None:
    src = tone(1000, 24000, freq=300.0)
    resampler = StreamResampler(24000, 16000)
    step = 480 * 2  # 20 ms chunks at 24 kHz
    streamed = b"".join(resampler.process(src[i : i + step]) for i in range(0, len(src), step))
    streamed += resampler.flush()
    whole = resample(src, 24000, 16000)
    a, b = pcm16_to_array(streamed).astype(int), pcm16_to_array(whole).astype(int)
    assert abs(a.size - b.size) <= 2
    n = min(a.size, b.size)
    # Chunk boundaries would show up as jumps far above the tone's own sample-to-sample slope.
    max_step = int(np.max(np.abs(np.diff(a[200 : n - 200]))))
    slope = 2 * np.pi * 300.0 / 16000 * 0.3 * 32767
    assert max_step <= slope * 1.1
    assert np.max(np.abs(a[200 : n - 200] - b[200 : n - 200])) < 50


def test_stream_resampler_can_start_a_new_stream_after_flush() -> None:
    resampler = StreamResampler(16000, 8000)
    first = resampler.process(tone(200, 16000)) + resampler.flush()
    second = resampler.process(tone(200, 16000)) + resampler.flush()
    assert len(first) == len(second) == 1600 * 2


def test_framer_rechunks_arbitrary_chunks_into_exact_frames() -> None:
    rng = random.Random(7)
    data = np.arange(16000, dtype=np.int16).tobytes()
    framer = Framer(16000, 20)
    frames: list[bytes] = []
    pos = 0
    while pos < len(data):
        size = rng.randrange(1, 1500) * 2
        frames += framer.push(data[pos : pos + size])
        pos += size
    assert all(len(f) == 640 for f in frames)
    assert len(frames) == 50
    assert b"".join(frames) == data
    assert framer.flush() is None


def test_framer_flush_pads_the_last_partial_frame() -> None:
    framer = Framer(8000, 20)
    assert framer.push(b"\x01\x00" * 100) == []
    tail = framer.flush()
    assert tail is not None
    assert len(tail) == bytes_per_frame(8000) == 320
    assert tail[:200] == b"\x01\x00" * 100
    assert tail[200:] == bytes(120)


def test_levels() -> None:
    loud = tone(1000, 16000, amplitude=0.3)
    assert rms(loud) == pytest.approx(0.3 / np.sqrt(2), rel=1e-3)
    assert dbfs(loud) == pytest.approx(20 * np.log10(0.3 / np.sqrt(2)), abs=0.05)
    assert rms(silence(20, 16000)) == 0.0
    assert dbfs(silence(20, 16000)) == SILENCE_DBFS
    assert rms(b"") == 0.0


def test_silence_length() -> None:
    assert silence(20, 16000) == bytes(640)
    assert len(silence(1000, 48000)) == 96000


def test_low_latency_stream_resampling_releases_every_chunk() -> None:
    quick = StreamResampler(16000, 8000, quality="QQ")
    outputs = [len(quick.process(tone(20, 16000))) // 2 for _ in range(5)]
    assert all(n >= 150 for n in outputs)  # no block buffering: each 20 ms chunk comes straight out
