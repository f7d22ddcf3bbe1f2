"""A failing provider loses one turn, not the call."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from callgate.errors import ProviderError
from callgate.pipeline import PipelineEvent, TurnEnded, UserStartedSpeaking
from callgate.pipeline.interfaces import AgentEvent, AgentText, Transcript
from callgate.providers.fake import (
    FakeAgent,
    FakeSTT,
    FakeTTS,
    PipelineHarness,
    RecordingOutput,
    ScriptedReply,
    VirtualClock,
)


class FlakySTT(FakeSTT):
    def __init__(self, clock: VirtualClock, transcripts: list[str], fail: set[int]) -> None:
        super().__init__(clock, transcripts, delay=0.1)
        self.fail = fail
        self.calls = 0

    async def transcribe(self, pcm16: bytes, *, language: str = "en", prompt: str = "") -> Transcript:
        self.calls += 1
        if self.calls in self.fail:
            raise ProviderError("stt crashed")
        return await super().transcribe(pcm16, language=language)


class FlakyTTS(FakeTTS):
    """Fails on the sentence containing ``poison`` after its first chunk."""

    def __init__(self, clock: VirtualClock, poison: str) -> None:
        super().__init__(clock, sample_rate=16000, chunk_ms=100)
        self.poison = poison

    async def _stream(self, text: str) -> AsyncIterator[bytes]:
        async for chunk in super()._stream(text):
            yield chunk
            if self.poison in text:
                raise ProviderError("tts crashed")


async def test_an_stt_failure_loses_that_utterance_only() -> None:
    clock = VirtualClock()
    stt = FlakySTT(clock, ["second try"], fail={1})
    async with PipelineHarness(clock=clock, stt=stt, replies=["Got it."]) as h:
        await h.speak(400)
        await h.silence(1500)
        assert h.pipeline.metrics.stt_failures == 1
        assert h.agent.respond_calls == []
        await h.speak(400)
        await h.silence(3000)
        assert h.agent.respond_calls == ["second try"]


async def test_a_tts_failure_ends_the_reply_with_what_was_heard() -> None:
    clock = VirtualClock()
    tts = FlakyTTS(clock, poison="broken")
    async with PipelineHarness(
        clock=clock, tts=tts, replies=["Fine words first. Then a broken one.", "Ok."]
    ) as h:
        h.pipeline.push_text("hi")
        await h.wait(5000)
        assert h.pipeline.metrics.reply_failures == 1
        assert tts.active == 0
        record = h.output.of_type(TurnEnded)[-1].record
        assert record.role == "agent" and not record.interrupted
        assert record.text == "Fine words first."  # the broken sentence played only its first chunk
        assert h.output.names().count("BotStoppedSpeaking") == 1
        h.pipeline.push_text("again")
        await h.wait(2000)
        assert h.output.of_type(TurnEnded)[-1].record.text == "Ok."


class CrashingAgent(FakeAgent):
    """Says one sentence, starts another, then its LLM connection dies."""

    def greet(self) -> AsyncIterator[AgentEvent]:
        return super()._play(ScriptedReply())

    async def _play(self, script: ScriptedReply) -> AsyncIterator[AgentEvent]:
        yield AgentText("All good so far. ")
        yield AgentText("But then")
        raise ProviderError("llm connection reset")


async def test_an_agent_failure_still_plays_the_finished_sentences() -> None:
    clock = VirtualClock()
    async with PipelineHarness(clock=clock, agent=CrashingAgent(clock)) as h:
        h.pipeline.push_text("hi")
        await h.wait(3000)
        assert h.pipeline.metrics.reply_failures == 1
        assert h.tts is not None and h.tts.requests == ["All good so far."]
        assert len(h.output.audio) == 16 * 50 // 20
        record = h.output.of_type(TurnEnded)[-1].record
        assert (record.role, record.text) == ("agent", "All good so far.")


async def test_odd_sized_audio_is_refused_at_the_door() -> None:
    async with PipelineHarness() as h:
        with pytest.raises(ValueError, match="even"):
            h.pipeline.push_audio(b"\x00\x01\x02")
        h.pipeline.push_audio(b"")
        assert h.pipeline.metrics.input_chunks == 0


async def test_start_twice_is_an_error_and_push_after_stop_is_ignored() -> None:
    h = PipelineHarness()
    async with h:
        with pytest.raises(RuntimeError):
            await h.pipeline.start()
    h.pipeline.push_audio(bytes(640))
    h.pipeline.push_text("hello?")
    assert h.pipeline.metrics.input_chunks == 0


class BrokenOutput(RecordingOutput):
    async def send_event(self, event: PipelineEvent) -> None:
        if isinstance(event, UserStartedSpeaking):
            raise ConnectionError("client went away")
        await super().send_event(event)


async def test_a_dead_listener_is_reported_as_the_pipeline_failure() -> None:
    clock = VirtualClock()
    async with PipelineHarness(clock=clock, output=BrokenOutput(clock)) as h:
        assert h.pipeline.failure is None
        await h.speak(300)
        assert isinstance(h.pipeline.failure, ConnectionError)
