"""A scripted fake STT: returns the scripted transcripts in order, after a scripted delay on the clock."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable

from callgate.clock import Clock
from callgate.pipeline.interfaces import STT, STTCapabilities, STTStream, Transcript


class FakeSTT(STT):
    """``transcripts`` are returned one per utterance; after the script runs out, ``""`` (silence)."""

    def __init__(
        self,
        clock: Clock,
        transcripts: Iterable[str] = (),
        *,
        delay: float = 0.1,
        sample_rate: int = 16000,
        streaming: bool = False,
        prompt: bool = True,
    ) -> None:
        self.capabilities = STTCapabilities(sample_rate=sample_rate, streaming=streaming, prompt=prompt)
        self.clock = clock
        self._script = list(transcripts)
        self.delay = delay
        self.requests: list[bytes] = []
        """Audio of each utterance transcribed (batch) or streamed."""
        self.prompts: list[str] = []
        """The ``prompt`` of each batch transcription."""
        self.backlogged = False
        """:meth:`busy` says so, as a shared engine with other calls' work waiting would."""
        self._in_flight = 0
        self.streams: list[FakeSTTStream] = []

    def next_text(self) -> str:
        return self._script.pop(0) if self._script else ""

    async def transcribe(self, pcm16: bytes, *, language: str = "en", prompt: str = "") -> Transcript:
        self.requests.append(pcm16)
        self.prompts.append(prompt)
        self._in_flight += 1
        try:
            await self.clock.sleep(self.delay)
        finally:
            self._in_flight -= 1
        return Transcript(text=self.next_text(), language=language)

    def busy(self) -> bool:
        return self.backlogged or self._in_flight > 0

    def stream(self, *, language: str = "en") -> FakeSTTStream:
        stream = FakeSTTStream(self, language)
        self.streams.append(stream)
        return stream


class FakeSTTStream(STTStream):
    """Streams one interim result (the first word of the next transcript) once audio arrives."""

    def __init__(self, owner: FakeSTT, language: str) -> None:
        self._owner = owner
        self._language = language
        self._audio = bytearray()
        self._interim: asyncio.Queue[Transcript | None] = asyncio.Queue()
        self._text: str | None = None
        self.closed = False

    def _peek(self) -> str:
        if self._text is None:
            self._text = self._owner.next_text()
        return self._text

    def push(self, pcm16: bytes) -> None:
        if not self._audio and pcm16:
            words = self._peek().split()
            if words:
                self._interim.put_nowait(Transcript(text=words[0], is_final=False))
        self._audio.extend(pcm16)

    async def finish(self) -> Transcript:
        self._owner.requests.append(bytes(self._audio))
        await self._owner.clock.sleep(self._owner.delay)
        self._interim.put_nowait(None)
        return Transcript(text=self._peek(), language=self._language)

    async def interim(self) -> AsyncIterator[Transcript]:
        while (result := await self._interim.get()) is not None:
            yield result

    async def aclose(self) -> None:
        self.closed = True
