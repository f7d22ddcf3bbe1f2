"""One caller utterance on its way to a transcript, batch or streaming per the STT's capabilities.

Created when the turn detector confirms speech. With a streaming STT the audio goes to the engine as it
arrives and interim results are forwarded; otherwise the utterance is transcribed in one request when the
turn ends. Either way :meth:`Utterance.transcribe` returns the final transcript.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from callgate.pipeline.audio import StreamResampler, resample
from callgate.pipeline.interfaces import STT, STTStream, Transcript

logger = logging.getLogger(__name__)

InterimHandler = Callable[[Transcript], Awaitable[None]]


class Utterance:
    def __init__(
        self,
        stt: STT,
        *,
        input_rate: int,
        language: str,
        first_speech_at: float,
        on_interim: InterimHandler | None = None,
        ignored: bool = False,
    ) -> None:
        self._stt = stt
        self._input_rate = input_rate
        self._language = language
        self.first_speech_at = first_speech_at
        self.ignored = ignored
        """Speech the pipeline will not answer (the agent was speaking and interruptions are off)."""
        self.last_speech_at: float | None = None
        self.decided_at: float | None = None
        self.audio = b""
        self._stream: STTStream | None = None
        self._resampler: StreamResampler | None = None
        self._interim_task: asyncio.Task[None] | None = None
        if stt.capabilities.streaming and not ignored:
            try:
                self._stream = stt.stream(language=language)
            except Exception:
                logger.exception("could not open an STT stream; transcribing the utterance in one go")
                return
            self._resampler = StreamResampler(input_rate, stt.capabilities.sample_rate)
            if on_interim is not None:
                self._interim_task = asyncio.create_task(
                    self._forward_interim(self._stream, on_interim), name="stt-interim"
                )

    @property
    def streaming(self) -> bool:
        return self._stream is not None

    def push(self, pcm16: bytes) -> None:
        """Audio at the input rate, while the caller speaks (streaming engines only need it)."""
        if self._stream is not None and self._resampler is not None:
            self._stream.push(self._resampler.process(pcm16))

    def end(self, audio: bytes, *, last_speech_at: float, decided_at: float) -> None:
        self.audio = audio
        self.last_speech_at = last_speech_at
        self.decided_at = decided_at

    async def transcribe(self) -> Transcript:
        try:
            if self._stream is not None and self._resampler is not None:
                self._stream.push(self._resampler.flush())
                return await self._stream.finish()
            pcm = resample(self.audio, self._input_rate, self._stt.capabilities.sample_rate)
            return await self._stt.transcribe(pcm, language=self._language)
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        task, self._interim_task = self._interim_task, None
        if task is not None:
            task.cancel()
            await asyncio.wait({task})  # unlike `await task`, never swallows our own cancellation
        stream, self._stream = self._stream, None
        if stream is not None:
            await stream.aclose()

    @staticmethod
    async def _forward_interim(stream: STTStream, on_interim: InterimHandler) -> None:
        try:
            async for result in stream.interim():
                if result.text:
                    await on_interim(result)
        except Exception:
            logger.exception("interim transcripts failed")
