"""Synthesised speech kept in memory, so a sentence said before starts playing at once.

Scripted agents say the same lines on every call (the greeting, "What day would suit you?"), and LLM
agents repeat their stock phrases; synthesising them again costs 100-600 ms of the caller's wait and a
core's worth of CPU. :class:`CachedTTS` wraps a TTS engine: a sentence it has synthesised in full is
kept (least recently used first out, within a byte budget shared by every voice of the process) and
replayed from memory the next time. A synthesis that is cancelled (barge-in) or fails is not kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator

from callgate.pipeline.interfaces import TTS

__all__ = ["AudioCache", "CachedTTS"]

log = logging.getLogger(__name__)

MAX_TEXT_CHARS = 400
"""Longer texts are rarely said twice word for word: not worth their memory."""


class AudioCache:
    """An LRU map ``(voice, text) -> PCM16 chunks`` within ``max_bytes``. Event-loop use only."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self.hits = 0
        self.misses = 0
        self._entries: OrderedDict[tuple[str, str], tuple[bytes, ...]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: tuple[str, str]) -> bool:
        """Whether ``key`` is kept (not counted as a hit or a miss)."""
        return key in self._entries

    def get(self, key: tuple[str, str]) -> tuple[bytes, ...] | None:
        chunks = self._entries.get(key)
        if chunks is None:
            self.misses += 1
            return None
        self.hits += 1
        self._entries.move_to_end(key)
        return chunks

    def put(self, key: tuple[str, str], chunks: tuple[bytes, ...]) -> None:
        size = sum(len(c) for c in chunks)
        if size > self.max_bytes // 8:  # one long text must not flush everything else
            return
        old = self._entries.pop(key, None)
        if old is not None:
            self.bytes -= sum(len(c) for c in old)
        self._entries[key] = chunks
        self.bytes += size
        while self.bytes > self.max_bytes:
            _, evicted = self._entries.popitem(last=False)
            self.bytes -= sum(len(c) for c in evicted)


class CachedTTS(TTS):
    """``inner`` with its finished sentences cached in ``cache`` under ``voice`` (its settings)."""

    def __init__(self, inner: TTS, *, cache: AudioCache, voice: str) -> None:
        self.inner = inner
        self.capabilities = inner.capabilities
        self._cache = cache
        self._voice = voice
        self._prefetch: tuple[str, asyncio.Task[None]] | None = None
        """The text synthesised ahead of its request (:meth:`prefetch`), at most one at a time."""

    def prefetch(self, text: str) -> None:
        """Synthesise ``text`` into the cache now (a sentence the agent is about to say); an earlier
        prefetch still running is dropped (its guess is older)."""
        key = (self._voice, text)
        if len(text) > MAX_TEXT_CHARS or key in self._cache:
            return
        if self._prefetch is not None:
            if self._prefetch[0] == text:
                return
            self._prefetch[1].cancel()
        task = asyncio.get_running_loop().create_task(self._fill(key, text), name="tts-prefetch")
        task.add_done_callback(_retrieve)
        self._prefetch = (text, task)

    async def _fill(self, key: tuple[str, str], text: str) -> None:
        chunks = [chunk async for chunk in self.inner.synthesize(text) if chunk]
        if chunks:
            self._cache.put(key, tuple(chunks))

    async def synthesize(self, text: str) -> AsyncIterator[bytes]:
        key = (self._voice, text)
        cacheable = len(text) <= MAX_TEXT_CHARS
        prefetch, self._prefetch = self._prefetch, None
        if prefetch is not None:
            if prefetch[0] == text:  # synthesised ahead: wait for it (a failure: synthesise below)
                with contextlib.suppress(Exception):
                    await asyncio.shield(prefetch[1])
            else:  # the guess was wrong: its synthesis only takes CPU from this one
                prefetch[1].cancel()
        cached = self._cache.get(key) if cacheable else None
        if cached is not None:
            for chunk in cached:
                yield chunk
            return
        chunks: list[bytes] = []
        audio = self.inner.synthesize(text)
        try:
            async for chunk in audio:
                if cacheable:
                    chunks.append(chunk)
                yield chunk
        finally:
            aclose = getattr(audio, "aclose", None)
            if aclose is not None:
                await aclose()
        # Reached only when the synthesis finished: a cancelled or failed one raised above.
        if cacheable and chunks:
            self._cache.put(key, tuple(chunks))

    def warm_up(self) -> None:
        """Load the voice now, if the engine can (blocking)."""
        warm_up = getattr(self.inner, "warm_up", None)
        if warm_up is not None:
            warm_up()

    async def aclose(self) -> None:
        prefetch, self._prefetch = self._prefetch, None
        if prefetch is not None:
            prefetch[1].cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await prefetch[1]
        await self.inner.aclose()


def _retrieve(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and (error := task.exception()) is not None:
        log.warning("speech synthesised ahead failed: %s", error)
