"""A scripted fake TTS: a tone of ``ms_per_char`` per character, after a first-chunk delay on the clock.

Audio length is proportional to the text, so tests can compute exactly which part of a sentence had been
played when the caller barged in.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from callgate.clock import Clock
from callgate.pipeline.audio import SAMPLE_WIDTH, tone
from callgate.pipeline.interfaces import TTS, TTSCapabilities


class FakeTTS(TTS):
    def __init__(
        self,
        clock: Clock,
        *,
        sample_rate: int = 24000,
        ms_per_char: float = 50.0,
        first_chunk_delay: float = 0.1,
        chunk_ms: int = 200,
        chunk_delay: float = 0.0,
        freq: float = 440.0,
    ) -> None:
        self.capabilities = TTSCapabilities(sample_rate=sample_rate, streaming=True)
        self._clock = clock
        self.ms_per_char = ms_per_char
        self.first_chunk_delay = first_chunk_delay
        self.chunk_ms = chunk_ms
        self.chunk_delay = chunk_delay
        self.freq = freq
        self.requests: list[str] = []
        self.active = 0
        self.completed = 0
        self.cancelled = 0

    def duration_ms(self, text: str) -> float:
        return len(text) * self.ms_per_char

    def synthesize(self, text: str) -> AsyncIterator[bytes]:
        self.requests.append(text)
        return self._stream(text)

    async def _stream(self, text: str) -> AsyncIterator[bytes]:
        self.active += 1
        try:
            rate = self.capabilities.sample_rate
            audio = tone(self.duration_ms(text), rate, freq=self.freq)
            step = rate * self.chunk_ms // 1000 * SAMPLE_WIDTH
            await self._clock.sleep(self.first_chunk_delay)
            for i in range(0, len(audio), step):
                if i and self.chunk_delay:
                    await self._clock.sleep(self.chunk_delay)
                yield audio[i : i + step]
            self.completed += 1
        except (GeneratorExit, asyncio.CancelledError):
            self.cancelled += 1
            raise
        finally:
            self.active -= 1
