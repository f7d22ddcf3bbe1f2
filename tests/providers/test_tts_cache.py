"""Sentences said before are replayed from memory; cancelled or failed ones are never kept."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator

import pytest

from callgate.pipeline.interfaces import TTS, TTSCapabilities
from callgate.providers.registry import EngineRegistry
from callgate.providers.tts_cache import AudioCache, CachedTTS


async def collect(audio: AsyncIterator[bytes]) -> bytes:
    return b"".join([chunk async for chunk in audio])


@pytest.fixture
def espeak() -> TTS:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    from callgate.providers.espeak import EspeakTTS

    return EspeakTTS()


async def test_a_sentence_said_again_is_replayed_from_memory(espeak: TTS) -> None:
    cache = AudioCache(8 * 1024 * 1024)
    tts = CachedTTS(espeak, cache=cache, voice="espeak")
    first = await collect(tts.synthesize("What day would suit you?"))
    assert len(first) > 16000 and cache.misses == 1 and cache.hits == 0 and len(cache) == 1
    again = await collect(tts.synthesize("What day would suit you?"))
    assert again == first and cache.hits == 1
    other = await collect(tts.synthesize("And what time?"))
    assert other != first and len(cache) == 2
    assert cache.bytes == len(first) + len(other)


async def test_a_cancelled_synthesis_is_not_kept(espeak: TTS) -> None:
    cache = AudioCache(8 * 1024 * 1024)
    tts = CachedTTS(espeak, cache=cache, voice="espeak")
    audio = tts.synthesize("This sentence is interrupted by the caller before it ends.")
    assert await anext(audio)  # type: ignore[arg-type]
    await audio.aclose()  # type: ignore[attr-defined]
    assert len(cache) == 0 and cache.bytes == 0
    full = await collect(tts.synthesize("This sentence is interrupted by the caller before it ends."))
    assert len(full) > 32000 and len(cache) == 1  # the next full synthesis is kept


class Failing(TTS):
    capabilities = TTSCapabilities(sample_rate=16000)

    async def synthesize(self, text: str) -> AsyncIterator[bytes]:
        yield b"\x01\x00" * 320
        raise RuntimeError("engine crashed")


async def test_a_failed_synthesis_is_not_kept() -> None:
    cache = AudioCache(1024 * 1024)
    tts = CachedTTS(Failing(), cache=cache, voice="failing")
    with pytest.raises(RuntimeError):
        await collect(tts.synthesize("Hello."))
    assert len(cache) == 0


def test_least_recently_used_entries_leave_first_within_the_budget() -> None:
    cache = AudioCache(8000)
    for name in ("a", "b", "c", "d"):
        cache.put(("v", name), (b"x" * 1000,))
    assert cache.get(("v", "a")) is not None  # "a" is now the most recent
    for name in ("e", "f", "g", "h", "i"):
        cache.put(("v", name), (b"x" * 1000,))
    assert cache.bytes <= 8000 and len(cache) == 8
    assert cache.get(("v", "b")) is None and cache.get(("v", "a")) is not None
    cache.put(("v", "huge"), (b"x" * 1001,))  # over 1/8 of the budget: not kept
    assert cache.get(("v", "huge")) is None


async def test_registry_wraps_each_voice_with_one_shared_cache(espeak: TTS) -> None:
    registry = EngineRegistry(tts_cache_bytes=4 * 1024 * 1024)
    us = registry.tts({"engine": "espeak", "voice": "en-us"})
    gb = registry.tts({"engine": "espeak", "voice": "en-gb"})
    assert isinstance(us, CachedTTS) and isinstance(gb, CachedTTS) and us is not gb
    assert registry.tts({"engine": "espeak", "voice": "en-us"}) is us
    a = await collect(us.synthesize("Good morning."))
    b = await collect(gb.synthesize("Good morning."))
    assert a != b  # voices do not share entries
    assert registry.tts_cache is not None and len(registry.tts_cache) == 2
    assert not isinstance(EngineRegistry().tts({"engine": "espeak"}), CachedTTS)  # off by default


class CountingTTS(TTS):
    """espeak-ng with a count of the texts it was asked for."""

    def __init__(self, inner: TTS) -> None:
        self.inner = inner
        self.capabilities = inner.capabilities
        self.asked: list[str] = []

    async def synthesize(self, text: str) -> AsyncIterator[bytes]:
        self.asked.append(text)
        async for chunk in self.inner.synthesize(text):
            yield chunk


async def test_a_sentence_synthesised_ahead_is_played_without_a_second_synthesis(espeak: TTS) -> None:
    import asyncio

    counting = CountingTTS(espeak)
    tts = CachedTTS(counting, cache=AudioCache(8 * 1024 * 1024), voice="espeak")
    tts.prefetch("What day would suit you?")
    tts.prefetch("What day would suit you?")  # asked again while running: still one synthesis
    # Asked for before the synthesis ahead has finished: it waits for it instead of starting another.
    audio = await collect(tts.synthesize("What day would suit you?"))
    assert counting.asked == ["What day would suit you?"]
    assert audio == await collect(espeak.synthesize("What day would suit you?"))
    tts.prefetch("What day would suit you?")  # kept already: nothing to do
    await asyncio.sleep(0.05)
    assert counting.asked == ["What day would suit you?"]


async def test_guesses_of_several_calls_run_side_by_side_and_are_kept(espeak: TTS) -> None:
    import asyncio

    counting = CountingTTS(espeak)
    cache = AudioCache(8 * 1024 * 1024)
    tts = CachedTTS(counting, cache=cache, voice="espeak")  # one engine serves every call
    tts.prefetch("Sorry, I did not catch that.")  # one call's guess
    tts.prefetch("What time would suit you?")  # another call's
    said = await collect(tts.synthesize("And what day?"))  # a third call's reply is not held up
    assert said and "And what day?" in counting.asked
    for _ in range(250):  # a wrong guess still finishes: a flow's lines come back
        if len(cache) == 3:
            break
        await asyncio.sleep(0.02)
    assert ("espeak", "Sorry, I did not catch that.") in cache
    assert ("espeak", "What time would suit you?") in cache
    assert sorted(counting.asked) == [
        "And what day?", "Sorry, I did not catch that.", "What time would suit you?"
    ]  # fmt: skip
    await tts.aclose()
