"""Reminders: the agent checks the line when nothing has been heard for a while ("Are you still there?")."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from callgate.errors import ConfigError
from callgate.pipeline import BotTTSText, PipelineOptions, TurnEnded
from callgate.pipeline.interfaces import AgentEvent
from callgate.providers.fake import FakeAgent, PipelineHarness, ScriptedReply, VirtualClock

GREETING = "Hello, how can I help?"


def agent_turns(h: PipelineHarness) -> list[str]:
    return [e.record.text for e in h.output.of_type(TurnEnded) if e.record.role == "agent"]


def last_audio_at(h: PipelineHarness) -> float:
    return max(t for t, _ in h.output.audio)


def first_audio_after(h: PipelineHarness, at: float) -> float:
    return min(t for t, _ in h.output.audio if t > at)


async def test_a_quiet_caller_is_reminded_once_and_again_after_their_next_turn() -> None:
    opts = PipelineOptions(early_end_silence_ms=0)  # defaults: 10 s, one reminder in a row, English
    async with PipelineHarness(
        greeting=GREETING, transcripts=["yes, sorry"], replies=["Take your time."], options=opts
    ) as h:
        await h.silence(4000)
        greeting_ended = last_audio_at(h)
        await h.silence(int((greeting_ended + 9.9 - h.clock.monotonic()) * 1000))
        assert agent_turns(h) == [GREETING]  # 10 s have not passed since the agent's last sound
        await h.silence(3000)
        assert agent_turns(h) == [GREETING, "Are you still there?"]
        reminder_at = first_audio_after(h, greeting_ended)
        assert 10.0 <= reminder_at - greeting_ended <= 10.2  # 10 s of silence, then the TTS's first chunk
        assert h.agent.respond_calls == []  # the agent said it on its own: no caller turn was made up
        assert h.pipeline.metrics.reminders == 1

        await h.silence(30_000)  # one in a row: the agent now waits (the session's silence timeout)
        assert agent_turns(h) == [GREETING, "Are you still there?"]

        await h.speak(800)  # the caller's turn starts the count again
        await h.silence(3000)
        assert h.agent.respond_calls == ["yes, sorry"]
        answered = last_audio_at(h)
        await h.silence(11_000)
        assert agent_turns(h) == [GREETING, "Are you still there?", "Take your time.", "Are you still there?"]
        assert first_audio_after(h, answered) - answered >= 10.0
        assert h.pipeline.metrics.reminders == 2


async def test_own_reminders_in_turn_each_after_the_last_one_was_said() -> None:
    opts = PipelineOptions(
        early_end_silence_ms=0,
        reminder_after_s=5,
        reminder_max_count=3,
        reminders=("Hello?", "  Still  here. "),
    )
    async with PipelineHarness(greeting=GREETING, options=opts) as h:
        await h.silence(40_000)
        assert agent_turns(h) == [GREETING, "Hello?", "Still here.", "Still here."]
        starts = [e.record.started_at for e in h.output.of_type(TurnEnded)]
        ends = [e.record.ended_at for e in h.output.of_type(TurnEnded)]
        for previous_end, start in zip(ends, starts[1:], strict=False):
            # counted from the last frame of the one before (sent 20 ms before it ends)
            assert (start - previous_end).total_seconds() >= 5.0 - 0.02


async def test_no_reminder_while_the_agent_works_on_an_answer() -> None:
    # The agent takes 15 s to say anything (a slow LLM, a tool): the line is quiet, but not idle.
    slow = ScriptedReply("Here it is.", first_token_delay=15.0)
    async with PipelineHarness(
        greeting=GREETING, transcripts=["find my booking"], replies=[slow], options=PipelineOptions()
    ) as h:
        await h.silence(3000)
        await h.speak(800)
        await h.silence(17_000)
        assert agent_turns(h) == [GREETING, "Here it is."]
        assert h.pipeline.metrics.reminders == 0


async def test_a_caller_who_keeps_talking_is_not_reminded() -> None:
    async with PipelineHarness(greeting=GREETING, options=PipelineOptions(early_end_silence_ms=0)) as h:
        await h.silence(3000)
        for _ in range(8):  # 40 s of sound and pauses of 2 s, no words for the agent to answer
            await h.speak(3000)
            await h.silence(2000)
        assert agent_turns(h) == [GREETING]
        assert h.pipeline.metrics.reminders == 0


@pytest.mark.parametrize(
    "options",
    [
        PipelineOptions(reminder_after_s=0),
        PipelineOptions(reminder_max_count=0),
        PipelineOptions(reminders=()),
        PipelineOptions(language="ja"),  # no default reminder in Japanese: the agent's own or none
        PipelineOptions(mode="text"),  # a chat: the caller reads and types at their own pace
    ],
    ids=["after-0", "count-0", "empty", "language-without-defaults", "text-mode"],
)
async def test_no_reminders(options: PipelineOptions) -> None:
    async with PipelineHarness(greeting=GREETING, options=options) as h:
        await h.silence(30_000)
        assert agent_turns(h) == [GREETING]
        assert h.pipeline.metrics.reminders == 0


async def test_the_language_picks_the_default_reminder() -> None:
    async with PipelineHarness(greeting="Guten Tag.", options=PipelineOptions(language="de-DE")) as h:
        await h.silence(13_000)
        assert agent_turns(h) == ["Guten Tag.", "Sind Sie noch da?"]


def test_negative_reminder_settings_are_refused() -> None:
    with pytest.raises(ConfigError):
        PipelineOptions(reminder_after_s=-1)
    with pytest.raises(ConfigError):
        PipelineOptions(reminder_max_count=-1)


async def test_the_goodbye_is_said_then_the_call_ends() -> None:
    opts = PipelineOptions(early_end_silence_ms=0, reminder_after_s=0, silence_goodbye="Bye  for now.")
    async with PipelineHarness(greeting=GREETING, options=opts) as h:
        await h.silence(3000)
        assert await h.pipeline.say_goodbye()
        await h.silence(3000)
        assert agent_turns(h) == [GREETING, "Bye for now."]
        names = h.output.names()
        assert names.index("CallEndRequested") > len(names) - 1 - names[::-1].index("BotStoppedSpeaking")


async def test_no_goodbye_when_something_is_under_way_or_none_is_set() -> None:
    slow = ScriptedReply("Here it is.", first_token_delay=5.0)
    opts = PipelineOptions(early_end_silence_ms=0, reminder_after_s=0)
    async with PipelineHarness(greeting=GREETING, transcripts=["find it"], replies=[slow], options=opts) as h:
        await h.silence(3000)
        await h.speak(500)
        assert not await h.pipeline.say_goodbye()  # the caller is talking
        await h.silence(1000)
        assert not await h.pipeline.say_goodbye()  # the answer is on its way
        await h.silence(6000)
        assert agent_turns(h) == [GREETING, "Here it is."]
    async with PipelineHarness(greeting=GREETING, options=PipelineOptions(silence_goodbye="")) as h:
        await h.silence(3000)
        assert not await h.pipeline.say_goodbye()
        assert agent_turns(h) == [GREETING]


async def test_a_text_call_is_told_goodbye_in_text() -> None:
    async with PipelineHarness(greeting=GREETING, options=PipelineOptions(mode="text")) as h:
        await h.wait(1000)
        assert await h.pipeline.say_goodbye()
        await h.wait(1000)
        assert [e.text for e in h.output.of_type(BotTTSText)][-2:] == ["I'll end the call now.", "Goodbye!"]
        assert h.output.names()[-1] == "CallEndRequested"
        assert h.output.audio == []


class BrokenReminders(FakeAgent):
    def remind(self, text: str) -> AsyncIterator[AgentEvent]:
        raise RuntimeError("no reminder today")


async def test_a_failing_reminder_stops_the_reminders_not_the_call() -> None:
    clock = VirtualClock()
    agent = BrokenReminders(clock, ["Sure."], greeting=GREETING)
    opts = PipelineOptions(early_end_silence_ms=0, reminder_after_s=2)
    async with PipelineHarness(clock=clock, agent=agent, transcripts=["hello?"], options=opts) as h:
        await h.silence(6000)
        assert h.pipeline.failure is None
        await h.speak(600)
        await h.silence(3000)
        assert agent_turns(h) == [GREETING, "Sure."]
        assert h.pipeline.failure is None


async def test_a_caller_who_talks_over_the_goodbye_goes_on_with_the_call() -> None:
    opts = PipelineOptions(
        early_end_silence_ms=0, reminder_after_s=0, silence_goodbye="I will end the call now. Goodbye!"
    )
    clock = VirtualClock()
    agent = FakeAgent(clock, ["Good, so which day suits you?"], greeting=GREETING)
    async with PipelineHarness(
        clock=clock, agent=agent, transcripts=["Wait, I am still here."], options=opts
    ) as h:
        await h.silence(4000)
        assert await h.pipeline.say_goodbye() and h.pipeline.saying_goodbye
        await h.silence(300)  # the goodbye is playing
        await h.speak(1000)  # cut off after 700 ms of speech
        await h.silence(4000)
        assert "CallEndRequested" not in h.output.names()
        assert not h.pipeline.saying_goodbye
        assert agent.respond_calls == ["Wait, I am still here."]
        assert agent.interrupted_with == []  # the goodbye was the pipeline's, not the agent's answer
        [greeting, goodbye, answer] = agent_turns(h)
        assert greeting == GREETING and "I will end the call now. Goodbye!".startswith(goodbye)
        assert goodbye != "I will end the call now. Goodbye!"  # cut short
        assert answer == "Good, so which day suits you?"
        # Quiet again: the next goodbye ends the call.
        assert await h.pipeline.say_goodbye()
        await h.silence(6000)
        assert h.output.names()[-1] == "CallEndRequested"
