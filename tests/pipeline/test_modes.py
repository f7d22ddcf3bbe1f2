"""Output modes (audio, text, audio_text) and typed caller messages."""

from __future__ import annotations

import pytest

from callgate.errors import ConfigError
from callgate.pipeline import BotLLMText, BotTTSText, PipelineOptions, TurnEnded
from callgate.providers.fake import PipelineHarness


async def test_text_mode_sends_agent_text_and_no_audio() -> None:
    opts = PipelineOptions(mode="text")
    async with PipelineHarness(options=opts, replies=["Sure. Booked for Monday."]) as h:
        h.pipeline.push_text("book me in")
        await h.wait(2000)
        assert h.output.audio == []
        assert h.tts is not None and h.tts.requests == []
        assert "".join(e.text for e in h.output.of_type(BotLLMText)) == "Sure. Booked for Monday."
        assert [e.text for e in h.output.of_type(BotTTSText)] == ["Sure.", "Booked for Monday."]
        user, agent = (e.record for e in h.output.of_type(TurnEnded))
        assert (user.role, user.text) == ("user", "book me in")
        assert (agent.role, agent.text, agent.interrupted) == ("agent", "Sure. Booked for Monday.", False)
        assert agent.latency is not None
        assert agent.latency.agent_first_token_ms == pytest.approx(200)
        assert agent.latency.tts_first_audio_ms is None and agent.latency.total_ms is None
        assert "BotStartedSpeaking" not in h.output.names()


async def test_mode_switch_mid_call() -> None:
    async with PipelineHarness(replies=["One.", "Two.", "Three."]) as h:
        h.pipeline.push_text("first")
        await h.wait(2000)
        audio_after_first = len(h.output.audio)
        assert audio_after_first == 4 * 50 // 20 + 0  # "One." = 4 chars * 50 ms

        h.pipeline.set_mode("text")
        assert h.pipeline.mode == "text"
        h.pipeline.push_text("second")
        await h.wait(2000)
        assert len(h.output.audio) == audio_after_first
        assert h.output.of_type(BotTTSText)[-1].text == "Two."

        h.pipeline.set_mode("audio_text")
        h.pipeline.push_text("third")
        await h.wait(2000)
        assert len(h.output.audio) == audio_after_first + 300 // 20  # "Three." = 300 ms
        assert h.tts is not None and h.tts.requests == ["One.", "Three."]
        assert [e.record.text for e in h.output.of_type(TurnEnded)] == [
            "first", "One.", "second", "Two.", "third", "Three.",
        ]  # fmt: skip


async def test_switching_to_text_mid_reply_applies_from_the_next_sentence() -> None:
    async with PipelineHarness(replies=["Part one is here. Part two follows. Part three ends."]) as h:
        h.pipeline.push_text("go")
        await h.clock.run_until(lambda: bool(h.output.audio))
        h.pipeline.set_mode("text")
        await h.wait(5000)
        assert h.tts is not None
        assert "Part three ends." not in h.tts.requests
        assert len(h.output.audio) == 17 * 50 // 20 + 1  # only the sentence that was playing
        assert [e.text for e in h.output.of_type(BotTTSText)] == [
            "Part one is here.", "Part two follows.", "Part three ends.",
        ]  # fmt: skip
        record = h.output.of_type(TurnEnded)[-1].record
        assert record.text == "Part one is here. Part two follows. Part three ends."


async def test_a_typed_message_interrupts_a_speaking_agent() -> None:
    async with PipelineHarness(replies=["This is a long answer that takes a while to say.", "Okay."]) as h:
        h.pipeline.push_text("question")
        await h.wait(1000)
        h.pipeline.push_text("never mind")
        await h.wait(2000)
        assert h.agent.respond_calls == ["question", "never mind"]
        records = [e.record for e in h.output.of_type(TurnEnded)]
        assert [(r.role, r.interrupted) for r in records] == [
            ("user", False), ("agent", True), ("user", False), ("agent", False),
        ]  # fmt: skip
        assert "BotInterrupted" in h.output.names()


async def test_without_tts_replies_are_text_only() -> None:
    async with PipelineHarness(no_tts=True, replies=["Hello."]) as h:
        h.pipeline.push_text("hi")
        await h.wait(1000)
        assert h.output.audio == []
        assert [e.text for e in h.output.of_type(BotTTSText)] == ["Hello."]


async def test_invalid_modes_are_refused() -> None:
    with pytest.raises(ConfigError):
        PipelineOptions(mode="video")  # type: ignore[arg-type]
    async with PipelineHarness() as h:
        with pytest.raises(ConfigError):
            h.pipeline.set_mode("video")  # type: ignore[arg-type]
