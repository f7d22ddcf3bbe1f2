"""Preemptive generation: a prompt agent's LLM request leaves at the pause, with the speculative
transcript's words, before silence confirms the turn ended; the answer is used when the turn ends with
the same words after the same history, and cancelled otherwise."""

from __future__ import annotations

import asyncio

import pytest

from callgate.flows.prompt import PromptAgent
from callgate.pipeline.frames import TurnEnded, TurnLatency
from callgate.pipeline.interfaces import AgentText, ChatMessage
from callgate.pipeline.options import PipelineOptions
from callgate.providers.fake import PipelineHarness
from callgate.providers.fake.agent import FakeLLM, ScriptedReply
from callgate.providers.fake.clock import VirtualClock
from callgate.providers.fake.stt import FakeSTT

# A pause is transcribed after 240 ms of silence (100 ms of STT); silence ends the turn at 600 ms.
OPTS = PipelineOptions(end_of_turn_silence_ms=600, early_end_silence_ms=240)
LLM_DELAY = 0.3


def _agent(clock: VirtualClock, *replies: str) -> tuple[PromptAgent, FakeLLM]:
    llm = FakeLLM(clock, [ScriptedReply(r, first_token_delay=LLM_DELAY) for r in replies])
    return PromptAgent(llm, prompt="You book appointments.", allow_end_call=False), llm


def _answers(h: PipelineHarness) -> list[tuple[str, TurnLatency | None]]:
    return [
        (e.record.text, e.record.latency) for e in h.output.of_type(TurnEnded) if e.record.role == "agent"
    ]


def _last_user(request: list[ChatMessage]) -> str:
    return [m.content for m in request if m.role == "user"][-1]


@pytest.mark.parametrize("preemptive", [True, False])
async def test_the_request_leaves_at_the_pause_when_silence_ends_the_turn(preemptive: bool) -> None:
    clock = VirtualClock()
    agent, llm = _agent(clock, "Sure.")
    options = PipelineOptions(
        end_of_turn_silence_ms=600,
        early_end_silence_ms=240,
        transcribe_pause_ms=0,
        preemptive_generation=preemptive,
    )
    async with PipelineHarness(
        clock=clock,
        transcripts=["I need an appointment"],
        agent=agent,
        options=options,
        stt_delay=0.1,  # type: ignore[arg-type]
    ) as h:
        await h.speak(1000)
        await h.silence(3000)
        [(text, latency)] = _answers(h)
    assert text == "Sure."
    assert len(llm.requests) == 1 and _last_user(llm.requests[0]) == "I need an appointment"
    assert latency is not None and latency.endpointing_ms == pytest.approx(600, abs=20)
    if preemptive:
        # Asked at ~340 ms (pause + STT), answered 300 ms later: 40 ms after the turn ended at 600.
        assert agent.early_answers_used == 1
        assert latency.agent_first_token_ms == pytest.approx(40, abs=25)
    else:
        assert agent.early_answers_used == 0
        assert latency.agent_first_token_ms == pytest.approx(300, abs=25)


async def test_a_caller_who_goes_on_cancels_the_early_request() -> None:
    clock = VirtualClock()
    agent, llm = _agent(clock, "Not this one.", "Sure, for when?")
    async with PipelineHarness(
        clock=clock,
        transcripts=["I need an", "I need an appointment."],
        agent=agent,  # type: ignore[arg-type]
        options=OPTS,
        stt_delay=0.1,
    ) as h:
        await h.speak(600)
        await h.silence(400)  # the guess "I need an" is back at 340 ms: asked early, not a finished turn
        await h.speak(600)  # the caller goes on: that request is cancelled
        await h.silence(3000)
        answers = _answers(h)
    assert [text for text, _ in answers] == ["Sure, for when?"]
    assert [_last_user(r) for r in llm.requests] == ["I need an", "I need an appointment."]
    assert llm.cancelled == 1 and llm.completed == 1
    assert agent.early_answers_used == 1  # the second pause's guess ended the turn; its answer was used


async def _drain(agent: PromptAgent, text: str) -> str:
    return "".join([e.text async for e in agent.respond(text) if isinstance(e, AgentText)])


async def test_other_words_or_another_history_do_not_take_the_early_answer() -> None:
    clock = VirtualClock()
    agent, llm = _agent(clock, "early", "Hello!", "early again", "Yes, we are.")
    agent.prepare("hi")
    await clock.advance(0)
    assert await _drive(clock, _drain(agent, "hi there")) == "Hello!"
    assert llm.cancelled == 1 and agent.early_answers_used == 0
    agent.prepare("are you open")
    await clock.advance(0)
    agent.history.append(ChatMessage(role="assistant", content="(said meanwhile)"))
    assert await _drive(clock, _drain(agent, "are you open")) == "Yes, we are."
    assert llm.cancelled == 2 and agent.early_answers_used == 0
    assert [_last_user(r) for r in llm.requests] == ["hi", "hi there", "are you open", "are you open"]


async def test_dropping_the_early_answer_cancels_its_request() -> None:
    clock = VirtualClock()
    agent, llm = _agent(clock, "early")
    agent.prepare("hello")
    await clock.advance(0.1)
    assert llm.active == 1
    agent.drop_prepared()
    await clock.advance(0)
    assert llm.active == 0 and llm.cancelled == 1
    await agent.aclose()


async def _drive(clock: VirtualClock, coro):  # type: ignore[no-untyped-def]
    """Run ``coro`` while moving the virtual clock on until it finishes."""
    task = asyncio.ensure_future(coro)
    while not task.done():
        await clock.advance(0.05)
    return task.result()


@pytest.mark.parametrize("preemptive", [True, False])
async def test_a_flows_answer_is_synthesised_during_the_pause(preemptive: bool) -> None:
    from callgate.flows import FlowAgent
    from callgate.flows.demo import demo_flow
    from callgate.providers.fake.tts import FakeTTS
    from callgate.providers.tts_cache import AudioCache, CachedTTS

    clock = VirtualClock()
    agent = FlowAgent(demo_flow())
    tts = CachedTTS(
        FakeTTS(clock, first_chunk_delay=0.2, ms_per_char=5), cache=AudioCache(1 << 24), voice="fake"
    )
    options = PipelineOptions(preemptive_generation=preemptive)  # words known at a 150 ms pause
    async with PipelineHarness(
        clock=clock, agent=agent, tts=tts, transcripts=["hmm well okay"], options=options,  # type: ignore[arg-type]
        stt_delay=0.1,
    ) as h:  # fmt: skip
        await h.silence(8000)  # the greeting plays out
        await h.speak(1000)
        await h.silence(3000)
        [_greeting, (text, latency)] = _answers(h)
    assert text and latency is not None and latency.endpointing_ms == pytest.approx(560, abs=20)
    # Ahead: the reprompt's first sentence was synthesised by ~450 ms, before silence ended the turn.
    assert latency.tts_first_audio_ms == pytest.approx(0 if preemptive else 200, abs=25)


async def test_a_short_pause_mid_sentence_synthesises_nothing_ahead() -> None:
    from callgate.flows import FlowAgent
    from callgate.flows.demo import demo_flow
    from callgate.providers.fake.tts import FakeTTS
    from callgate.providers.tts_cache import AudioCache, CachedTTS

    class Spy(CachedTTS):
        ahead: list[str] = []

        def prefetch(self, text: str) -> None:
            self.ahead.append(text)
            super().prefetch(text)

    clock = VirtualClock()
    fake = FakeTTS(clock, first_chunk_delay=0.2, ms_per_char=5)
    tts = Spy(fake, cache=AudioCache(1 << 24), voice="fake")
    stt = FakeSTT(clock, ["I would like", "hmm let me think about it"], delay=0.1)
    async with PipelineHarness(
        clock=clock, agent=FlowAgent(demo_flow()), tts=tts, stt=stt,  # type: ignore[arg-type]
        options=PipelineOptions(),
    ) as h:  # fmt: skip
        await h.silence(8000)
        await h.speak(800)
        await h.silence(300)  # the words are known at ~250 ms; the caller goes on before the early end
        assert tts.ahead == []
        await h.speak(800)
        await h.silence(3000)
        assert len(tts.ahead) == 1  # the second pause outlasted the early end: its answer, once
        [_greeting, (text, _)] = _answers(h)
    assert text.startswith(tts.ahead[0])


@pytest.mark.parametrize("preemptive", [True, False])
async def test_words_that_end_the_turn_early_start_the_answers_synthesis_at_once(preemptive: bool) -> None:
    from callgate.flows import FlowAgent
    from callgate.flows.demo import demo_flow
    from callgate.providers.fake.tts import FakeTTS
    from callgate.providers.tts_cache import AudioCache, CachedTTS

    clock = VirtualClock()
    tts = CachedTTS(
        FakeTTS(clock, first_chunk_delay=0.2, ms_per_char=5), cache=AudioCache(1 << 24), voice="fake"
    )
    async with PipelineHarness(
        clock=clock, agent=FlowAgent(demo_flow()), tts=tts,  # type: ignore[arg-type]
        transcripts=["I would like to book an appointment."], stt_delay=0.1,
        options=PipelineOptions(preemptive_generation=preemptive),
    ) as h:  # fmt: skip
        await h.silence(8000)
        await h.speak(1000)
        await h.silence(3000)
        [_greeting, (_text, latency)] = _answers(h)
    # A finished sentence that is no answer the greeting waits for: ended at finished_sentence_silence_ms.
    assert latency is not None and latency.endpointing_ms == pytest.approx(460, abs=20)
    # Synthesis started with the words (~250 ms), 200 ms long: ready when the turn ended.
    assert latency.tts_first_audio_ms == pytest.approx(0 if preemptive else 200, abs=25)
