"""Barge-in: the caller talks over the agent."""

from __future__ import annotations

import pytest

from callgate.pipeline import (
    BotInterrupted,
    BotStoppedSpeaking,
    PipelineOptions,
    TurnEnded,
    UserStartedSpeaking,
)
from callgate.pipeline.sentences import split_sentences
from callgate.providers.fake import FakeTTS, PipelineHarness, ScriptedReply, VirtualClock

LONG = (
    "Thanks for calling. We are open from nine in the morning until six in the evening on weekdays, "
    "and from ten until two on Saturdays. Is there anything else I can help you with?"
)


def slow_tts(clock: VirtualClock) -> FakeTTS:
    # Faster than real time, but still synthesising when the caller barges in.
    return FakeTTS(
        clock, sample_rate=16000, ms_per_char=50, first_chunk_delay=0.1, chunk_ms=200, chunk_delay=0.1
    )


async def agent_talking(h: PipelineHarness, ms: int) -> None:
    await h.speak(500)
    while not h.output.audio:
        await h.silence(20)
    await h.silence(ms)


async def test_caller_speech_stops_the_agent_within_one_frame() -> None:
    clock = VirtualClock()
    reply = ScriptedReply(LONG, first_token_delay=0.2, token_delay=0.1)
    async with PipelineHarness(
        clock=clock, transcripts=["hours?"], replies=[reply], tts=slow_tts(clock)
    ) as h:
        await agent_talking(h, 2500)  # sentence 2 is being synthesised, sentence 3 being written
        assert h.tts is not None
        assert h.tts.active == 1 and h.agent.active == 1  # both still working
        await h.speak(400)
        await h.silence(2000)

        (t_int,) = h.output.times_of(BotInterrupted)
        sent = [t for t, _ in h.output.audio]
        assert max(sent) <= t_int
        assert t_int - max(sent) <= 0.02
        # The caller's speech had to last interruption_min_speech_ms (13 frames) first.
        t_started = h.output.times_of(UserStartedSpeaking)[-1]
        assert t_int - t_started == pytest.approx(0.26 - 0.1)
        # In-flight work is cancelled, not left running.
        assert h.tts.active == 0 and h.tts.cancelled == 1
        assert h.agent.active == 0 and h.agent.cancelled == 1
        assert h.pipeline.metrics.interruptions == 1

        names = h.output.names()
        i = names.index("BotInterrupted")
        assert names[i + 1 : i + 3] == ["BotStoppedSpeaking", "TurnEnded"]
        agent_turn = h.output.of_type(TurnEnded)[1].record
        assert agent_turn.role == "agent" and agent_turn.interrupted
        full = " ".join(split_sentences(LONG))
        assert agent_turn.text and full.startswith(agent_turn.text) and agent_turn.text != full
        assert h.agent.interrupted_with == [agent_turn.text]

        # Which text was heard: whole sentences played, then words in proportion to played samples.
        played_ms = len(sent) * 20
        first = "Thanks for calling."
        assert played_ms > h.tts.duration_ms(first)
        partial_chars = (played_ms - 20 * -(-int(h.tts.duration_ms(first)) // 20)) / h.tts.ms_per_char
        second = split_sentences(LONG)[1]
        heard = agent_turn.text[len(first) + 1 :]
        assert second.startswith(heard)
        assert len(heard) <= partial_chars < len(heard) + len(second[len(heard) :].split(" ", 2)[1]) + 2


async def test_the_interrupting_turn_is_answered_next() -> None:
    clock = VirtualClock()
    async with PipelineHarness(
        clock=clock, transcripts=["hours?", "stop, what about Sunday?"],
        replies=[LONG, "We are closed on Sundays."], tts=slow_tts(clock),
    ) as h:  # fmt: skip
        await agent_talking(h, 1500)
        await h.speak(800)
        await h.silence(4000)
        assert h.agent.respond_calls == ["hours?", "stop, what about Sunday?"]
        records = [e.record for e in h.output.of_type(TurnEnded)]
        assert [(r.role, r.interrupted) for r in records] == [
            ("user", False), ("agent", True), ("user", False), ("agent", False),
        ]  # fmt: skip
        assert records[-1].text == "We are closed on Sundays."


async def test_a_cough_shorter_than_the_guard_does_not_interrupt() -> None:
    clock = VirtualClock()
    async with PipelineHarness(clock=clock, transcripts=["hours?"], replies=[LONG], tts=slow_tts(clock)) as h:
        await agent_talking(h, 1000)
        await h.speak(160)  # starts a user turn (>= min_speech_ms) but stays under the 250 ms guard
        await h.silence(300)
        assert h.output.of_type(BotInterrupted) == []
        assert h.output.audio[-1][0] == pytest.approx(h.clock.monotonic() - 0.02, abs=0.021)


async def test_interruptions_disabled_the_agent_finishes_and_the_speech_is_ignored() -> None:
    clock = VirtualClock()
    async with PipelineHarness(
        clock=clock, transcripts=["hours?", "never used"], replies=[LONG], tts=slow_tts(clock),
        options=PipelineOptions(allow_interruptions=False),
    ) as h:  # fmt: skip
        await agent_talking(h, 1000)
        await h.speak(1000)
        await h.silence(15000)
        assert h.output.of_type(BotInterrupted) == []
        assert h.pipeline.metrics.interruptions == 0
        assert h.tts is not None
        assert h.tts.cancelled == 0 and h.agent.cancelled == 0
        records = [e.record for e in h.output.of_type(TurnEnded)]
        assert [(r.role, r.interrupted) for r in records] == [("user", False), ("agent", False)]
        assert records[1].text == " ".join(split_sentences(LONG))
        assert len(h.stt.requests) == 1  # the speech over the agent was never transcribed
        assert h.agent.respond_calls == ["hours?"]
        total_ms = sum(20 * -(-int(h.tts.duration_ms(s)) // 20) for s in split_sentences(LONG))
        assert len(h.output.audio) * 20 == total_ms


async def test_speech_while_the_agent_thinks_cancels_the_pending_reply() -> None:
    async with PipelineHarness(
        transcripts=["hello", "sorry, I mean goodbye"],
        replies=[ScriptedReply("Hi!", first_token_delay=2.0), "Bye."],
    ) as h:
        await h.speak(500)
        await h.silence(1200)  # turn ended, transcript in; the agent is "thinking" (2 s)
        assert h.agent.respond_calls == ["hello"] and h.agent.active == 1
        await h.speak(600)
        assert h.agent.active == 0 and h.agent.cancelled == 1
        assert h.agent.interrupted_with == [""]
        assert h.output.audio == []
        await h.silence(3000)
        assert h.agent.respond_calls == ["hello", "sorry, I mean goodbye"]
        assert [e.record.text for e in h.output.of_type(TurnEnded)] == [
            "hello",
            "sorry, I mean goodbye",
            "Bye.",
        ]


async def test_stop_mid_reply_cancels_everything_and_records_what_was_heard() -> None:
    clock = VirtualClock()
    h = PipelineHarness(clock=clock, transcripts=["hours?"], replies=[LONG], tts=slow_tts(clock))
    async with h:
        await agent_talking(h, 1500)
        frames_before = len(h.output.audio)
    assert h.tts is not None
    assert h.tts.active == 0 and h.agent.active == 0
    await clock.advance(2.0)
    assert len(h.output.audio) == frames_before
    last = h.output.of_type(TurnEnded)[-1].record
    assert last.role == "agent" and last.interrupted
    assert last.text.startswith("Thanks for calling.")
    assert "BotInterrupted" not in h.output.names()
    assert h.output.of_type(BotStoppedSpeaking) == []
    await h.pipeline.stop()  # idempotent
