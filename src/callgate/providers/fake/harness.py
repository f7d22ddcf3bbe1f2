"""Run a :class:`ConversationPipeline` with scripted fakes under virtual time.

    async with PipelineHarness(transcripts=["hi"], replies=["Hello there."]) as h:
        await h.speak(800)
        await h.silence(2000)
        assert h.output.of_type(BotTTSText)

Caller audio is pushed in real time (one ``chunk_ms`` chunk, then the clock moves by ``chunk_ms``), so the
agent's paced playout, the fakes' delays and the caller's audio interleave exactly as on a live call.
"""

from __future__ import annotations

from collections.abc import Iterable
from types import TracebackType
from typing import Self

from callgate.pipeline.audio import silence, tone
from callgate.pipeline.options import PipelineOptions
from callgate.pipeline.pipeline import ConversationPipeline
from callgate.pipeline.recording import Recorder
from callgate.providers.fake.agent import FakeAgent, ScriptedReply
from callgate.providers.fake.clock import VirtualClock
from callgate.providers.fake.output import RecordingOutput
from callgate.providers.fake.stt import FakeSTT
from callgate.providers.fake.tts import FakeTTS
from callgate.providers.fake.turn import FakeEndOfTurn
from callgate.providers.fake.vad import FakeVAD

INPUT_RATE = 16000


class PipelineHarness:
    def __init__(
        self,
        *,
        transcripts: Iterable[str] = (),
        replies: Iterable[ScriptedReply | str] = (),
        greeting: ScriptedReply | str | None = None,
        options: PipelineOptions | None = None,
        clock: VirtualClock | None = None,
        vad: FakeVAD | None = None,
        stt: FakeSTT | None = None,
        agent: FakeAgent | None = None,
        output: RecordingOutput | None = None,
        tts: FakeTTS | None = None,
        no_tts: bool = False,
        stt_delay: float = 0.3,
        recorder: Recorder | None = None,
        end_of_turn: FakeEndOfTurn | None = None,
    ) -> None:
        self.clock = clock or VirtualClock()
        self.vad = vad or FakeVAD()
        self.stt = stt or FakeSTT(self.clock, transcripts, delay=stt_delay)
        self.agent = agent or FakeAgent(self.clock, replies, greeting=greeting)
        self.tts = None if no_tts else (tts or FakeTTS(self.clock))
        self.output = output or RecordingOutput(self.clock)
        self.pipeline = ConversationPipeline(
            vad=self.vad,
            stt=self.stt,
            agent=self.agent,
            tts=self.tts,
            output=self.output,
            clock=self.clock,
            # Speculative transcription at pauses changes when a scripted transcript is taken; tests of
            # it ask for it with their own options.
            options=options or PipelineOptions(early_end_silence_ms=0),
            recorder=recorder,
            end_of_turn=end_of_turn,
        )

    async def __aenter__(self) -> Self:
        await self.pipeline.start()
        await self.clock.advance(0)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.pipeline.stop()

    async def speak(self, ms: int, *, chunk_ms: int = 20, freq: float = 220.0) -> None:
        """The caller "speaks" (a loud tone) for ``ms``, in real time."""
        await self.push(tone(ms, INPUT_RATE, freq=freq, amplitude=0.5), chunk_ms=chunk_ms)

    async def silence(self, ms: int, *, chunk_ms: int = 20) -> None:
        """The caller is silent for ``ms`` (zeros keep flowing, as from a live microphone)."""
        await self.push(silence(ms, INPUT_RATE), chunk_ms=chunk_ms)

    async def push(self, pcm16: bytes, *, chunk_ms: int = 20) -> None:
        step = INPUT_RATE * chunk_ms // 1000 * 2
        for i in range(0, len(pcm16), step):
            chunk = pcm16[i : i + step]
            self.pipeline.push_audio(chunk)
            await self.clock.advance(len(chunk) / 2 / INPUT_RATE)

    async def wait(self, ms: float) -> None:
        """Let ``ms`` of virtual time pass without caller audio."""
        await self.clock.advance(ms / 1000.0)
