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

MAX_AHEAD = 8
"""Sentences synthesised ahead at once (across calls): a guess only saves time when the engine is idle."""


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
        self._ahead: dict[str, asyncio.Task[None]] = {}
        """Texts being synthesised ahead of their request (:meth:`prefetch`). One engine serves every call
        of the process with these settings, so guesses of several calls run side by side."""

    def prefetch(self, text: str) -> None:
        """Synthesise ``text`` into the cache now (a sentence a call is about to say). A guess that turns
        out wrong still finishes and is kept (a flow's lines come back); at most :data:`MAX_AHEAD` run at
        once, later ones are skipped."""
        key = (self._voice, text)
        if len(text) > MAX_TEXT_CHARS or key in self._cache or text in self._ahead:
            return
        if len(self._ahead) >= MAX_AHEAD:
            return
        task = asyncio.get_running_loop().create_task(self._fill(key, text), name="tts-prefetch")
        self._ahead[text] = task
        task.add_done_callback(lambda done: self._settled(text, done))

    def _settled(self, text: str, task: asyncio.Task[None]) -> None:
        if self._ahead.get(text) is task:
            del self._ahead[text]
        if not task.cancelled() and (error := task.exception()) is not None:
            log.warning("speech synthesised ahead failed: %s", error)

    async def _fill(self, key: tuple[str, str], text: str) -> None:
        audio = self.inner.synthesize_ahead(text)
        try:
            chunks = [chunk async for chunk in audio if chunk]
        finally:  # cancelled (shutdown) or failed: the engine stops the sentence now, not at collection
            aclose = getattr(audio, "aclose", None)
            if aclose is not None:
                await aclose()
        if chunks:
            self._cache.put(key, tuple(chunks))

    async def synthesize(self, text: str) -> AsyncIterator[bytes]:
        key = (self._voice, text)
        cacheable = len(text) <= MAX_TEXT_CHARS
        ahead = self._ahead.get(text)
        if ahead is not None:  # synthesised ahead and not done yet: wait (a failure: synthesise below)
            with contextlib.suppress(Exception):
                await asyncio.shield(ahead)
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
        ahead = list(self._ahead.values())
        for task in ahead:
            task.cancel()
        for task in ahead:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.inner.aclose()
