"""The stereo call recording: caller left, agent right, aligned in time, written as it goes."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest

from callgate.pipeline import PipelineOptions, Recorder
from callgate.pipeline.audio import silence, tone
from callgate.providers.fake import PipelineHarness


def read_stereo(path: Path) -> tuple[np.ndarray, int]:
    with wave.open(str(path), "rb") as wav:
        assert wav.getnchannels() == 2
        assert wav.getsampwidth() == 2
        rate = wav.getframerate()
        data = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2").reshape(-1, 2)
    return data, rate


def level(channel: np.ndarray, rate: int, start: float, end: float) -> float:
    part = channel[int(start * rate) : int(end * rate)].astype(np.float64) / 32768
    return float(np.sqrt(np.mean(part * part))) if part.size else 0.0


def test_channels_are_placed_by_time_and_gaps_are_silent(tmp_path: Path) -> None:
    path = tmp_path / "call.wav"
    with Recorder(path) as rec:
        for i in range(50):  # 1 s of caller tone, 20 ms chunks
            rec.write_caller(tone(20, 16000, freq=200), i * 0.02)
        rec.write_agent(tone(500, 16000, freq=800), 2.0)
        rec.write_caller(silence(20, 16000), 2.9)
    data, rate = read_stereo(path)
    assert rate == 16000
    assert data.shape[0] == int(2.92 * 16000)
    left, right = data[:, 0], data[:, 1]
    assert level(left, rate, 0.0, 1.0) > 0.1
    assert level(left, rate, 1.0, 2.9) == 0.0
    assert level(right, rate, 0.0, 2.0) == 0.0
    assert level(right, rate, 2.0, 2.5) > 0.1
    assert level(right, rate, 2.5, 2.92) == 0.0


def test_jitter_is_absorbed_so_a_continuous_stream_stays_gapless(tmp_path: Path) -> None:
    path = tmp_path / "jitter.wav"
    chunk = tone(20, 16000, freq=200)
    with Recorder(path, max_jitter_ms=60) as rec:
        for i, jitter in enumerate([0, 0.03, -0.01, 0.05, 0.0, 0.02] * 10):
            rec.write_caller(chunk, i * 0.02 + jitter)
    data, _ = read_stereo(path)
    assert data.shape[0] == 60 * 320
    assert data[:, 0].tobytes() == chunk * 60


def test_audio_is_written_incrementally_not_held_until_close(tmp_path: Path) -> None:
    path = tmp_path / "long.wav"
    rec = Recorder(path, hold_ms=1000)
    for i in range(500):  # 10 s
        rec.write_caller(tone(20, 16000), i * 0.02)
    assert rec.frames_written >= 8 * 16000
    assert path.stat().st_size >= 8 * 16000 * 4
    rec.close()
    rec.close()  # idempotent
    data, _ = read_stereo(path)
    assert data.shape[0] == 10 * 16000


def test_agent_audio_at_another_rate_is_resampled(tmp_path: Path) -> None:
    path = tmp_path / "rate.wav"
    with Recorder(path) as rec:
        for i in range(25):
            rec.write_agent(tone(20, 24000, freq=500), 0.5 + i * 0.02, sample_rate=24000)
    data, rate = read_stereo(path)
    assert data.shape[0] == pytest.approx(16000, abs=320)  # the resampler releases audio in blocks
    assert level(data[:, 1], rate, 0.55, 0.95) > 0.1


async def test_pipeline_records_the_caller_left_and_the_agent_right(tmp_path: Path) -> None:
    path = tmp_path / "pipeline.wav"
    recorder = Recorder(path)
    opts = PipelineOptions(output_sample_rate=24000)
    async with PipelineHarness(
        transcripts=["hi"], replies=["Hello there."], recorder=recorder, options=opts
    ) as h:
        await h.speak(1000)
        await h.silence(3000)
        first_agent = h.output.audio[0][0]
        last_agent = h.output.audio[-1][0] + 0.02
    recorder.close()
    data, rate = read_stereo(path)
    left, right = data[:, 0], data[:, 1]
    assert data.shape[0] == pytest.approx(4.0 * rate, abs=rate * 0.03)
    # Caller pushed tone for [0, 1) s, then silence.
    assert level(left, rate, 0.05, 0.95) > 0.2
    assert level(left, rate, 1.05, 3.9) == 0.0
    # The agent was played from first_agent to last_agent (times since the pipeline started at 0).
    assert level(right, rate, 0.0, first_agent - 0.02) == 0.0
    assert level(right, rate, first_agent + 0.02, last_agent - 0.02) > 0.1
    assert level(right, rate, last_agent + 0.05, 3.9) < 0.001
    assert recorder.dropped_samples == 0
