"""An :class:`STTStream` for batch engines: buffer the utterance, transcribe it at the end."""

from __future__ import annotations

from collections.abc import AsyncIterator

from callgate.pipeline.interfaces import STT, STTStream, Transcript

__all__ = ["BufferedSTTStream"]


class BufferedSTTStream(STTStream):
    """Collects PCM16 until :meth:`finish`; gives no interim results."""

    def __init__(self, stt: STT, *, language: str = "en", max_seconds: float = 30.0) -> None:
        self._stt = stt
        self._language = language
        self._buffer = bytearray()
        # Whisper sees at most a 30 s window; keep the latest audio if the caller talks longer.
        self._max_bytes = int(max_seconds * stt.capabilities.sample_rate) * 2

    def push(self, pcm16: bytes) -> None:
        self._buffer += pcm16
        if len(self._buffer) > self._max_bytes:
            del self._buffer[: len(self._buffer) - self._max_bytes]

    async def finish(self) -> Transcript:
        audio, self._buffer = bytes(self._buffer), bytearray()
        return await self._stt.transcribe(audio, language=self._language)

    async def interim(self) -> AsyncIterator[Transcript]:
        return
        yield  # pragma: no cover - makes this an (empty) async generator

    async def aclose(self) -> None:
        self._buffer.clear()
