"""Speech-to-text with PocketSphinx (bundled US English model), decoding while the caller speaks.

A decoder holds ~90 MB of model and takes ~0.3 s to create, so decoders are pooled per process and
lent to one utterance at a time. All decoding runs on one shared worker thread; a stream schedules
at most one pending decode step at a time, which then takes all audio pushed so far.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from typing import Any

from callgate.errors import ProviderError
from callgate.pipeline.interfaces import STT, STTCapabilities, STTStream, Transcript
from callgate.providers._common import Pool, executor, require, run_in_lane

__all__ = ["PocketsphinxSTT", "PocketsphinxStream"]

_LANE = "pocketsphinx"
_pool: Pool[Any] | None = None
_pool_lock = threading.Lock()


def decoder_pool() -> Pool[Any]:
    global _pool
    with _pool_lock:
        if _pool is None:
            pocketsphinx = require("pocketsphinx", extra="speech")
            _pool = Pool(lambda: pocketsphinx.Decoder(loglevel="FATAL"), keep=4)
        return _pool


def _hypothesis(decoder: Any) -> str:
    hyp = decoder.hyp()
    return str(hyp.hypstr).strip() if hyp is not None else ""


class PocketsphinxStream(STTStream):
    """One caller's audio; interim hypotheses while speaking, the final one from :meth:`finish`."""

    def __init__(self, *, language: str = "en") -> None:
        self._language = language
        self._pool = decoder_pool()
        self._decoder: Any = None  # touched only on the worker thread
        self._pending = bytearray()
        self._scheduled = False
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._latest = ""
        self._changed = asyncio.Event()
        self._finished = False

    def push(self, pcm16: bytes) -> None:
        self._loop = self._loop or asyncio.get_running_loop()
        self._finished = False
        with self._lock:
            self._pending += pcm16
            if self._scheduled:
                return
            self._scheduled = True
        executor(_LANE).submit(self._drain)

    def _drain(self) -> None:
        with self._lock:
            data, self._pending = bytes(self._pending), bytearray()
            self._scheduled = False
        if self._decoder is None:
            self._decoder = self._pool.take()
            self._decoder.start_utt()
        if data:
            self._decoder.process_raw(data, False, False)
            text = _hypothesis(self._decoder)
            if text != self._latest and self._loop is not None:
                self._latest = text
                self._loop.call_soon_threadsafe(self._changed.set)

    def _end(self) -> str:
        self._drain()
        decoder, self._decoder = self._decoder, None
        try:
            decoder.end_utt()
            return _hypothesis(decoder)
        finally:
            self._pool.give(decoder)

    async def finish(self) -> Transcript:
        try:
            text = await run_in_lane(_LANE, self._end)
        except RuntimeError as exc:
            raise ProviderError(f"pocketsphinx failed: {exc}") from exc
        finally:
            self._finished = True
            self._latest = ""
            self._changed.set()
        return Transcript(text=text, language=self._language)

    async def interim(self) -> AsyncIterator[Transcript]:
        """Hypotheses as they change, until :meth:`finish` is called."""
        while not self._finished:
            await self._changed.wait()
            self._changed.clear()
            if self._finished:
                return
            yield Transcript(text=self._latest, is_final=False, language=self._language)

    async def aclose(self) -> None:
        self._finished = True
        self._changed.set()

        def release() -> None:
            decoder, self._decoder = self._decoder, None
            if decoder is not None:
                decoder.end_utt()
                self._pool.give(decoder)

        await run_in_lane(_LANE, release)


class PocketsphinxSTT(STT):
    """PocketSphinx at 16 kHz. Fast and light, but much less accurate than Whisper."""

    def __init__(self) -> None:
        self.capabilities = STTCapabilities(sample_rate=16000, streaming=True)

    def warm_up(self) -> None:
        decoder_pool().prefill(1)

    async def transcribe(self, pcm16: bytes, *, language: str = "en", prompt: str = "") -> Transcript:
        pool = decoder_pool()

        def work() -> str:
            decoder = pool.take()
            try:
                decoder.start_utt()
                decoder.process_raw(pcm16, False, True)
                decoder.end_utt()
                return _hypothesis(decoder)
            finally:
                pool.give(decoder)

        try:
            text = await run_in_lane(_LANE, work)
        except RuntimeError as exc:
            raise ProviderError(f"pocketsphinx failed: {exc}") from exc
        return Transcript(text=text, language=language)

    def stream(self, *, language: str = "en") -> PocketsphinxStream:
        return PocketsphinxStream(language=language)
