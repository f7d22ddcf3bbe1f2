"""PromptAgent on OpenAILLM against the local fake OpenAI server (real HTTP + SSE)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from callgate.flows import PromptAgent
from callgate.pipeline.interfaces import AgentEndCall, AgentEvent, AgentText, AgentTransfer
from callgate.providers.openai import OpenAILLM
from tests.support.fake_openai import FakeOpenAI, Reply, text_events, tool_events


@pytest.fixture
async def llm(fake_openai: FakeOpenAI) -> AsyncIterator[OpenAILLM]:
    client = OpenAILLM(model="m", base_url=fake_openai.base_url)
    yield client
    await client.aclose()


async def collect(stream: AsyncIterator[AgentEvent]) -> list[AgentEvent]:
    return [event async for event in stream]


async def test_prompt_variables_history_and_streaming(llm: OpenAILLM, fake_openai: FakeOpenAI) -> None:
    agent = PromptAgent(
        llm,
        prompt="You are the receptionist of {{clinic}}. The caller is {{name}}.",
        variables={"clinic": "Maple Street Clinic", "name": "Ann"},
        initial_message="Hi {{name}}, how can I help?",
    )
    assert await collect(agent.greet()) == [AgentText("Hi Ann, how can I help?")]
    fake_openai.replies.append(Reply(events=text_events("We open", " at eight.")))
    events = await collect(agent.respond("When do you open?"))
    assert events == [AgentText("We open"), AgentText(" at eight.")]
    sent = fake_openai.requests[0]
    assert sent["messages"] == [
        {"role": "system", "content": "You are the receptionist of Maple Street Clinic. The caller is Ann."},
        {"role": "assistant", "content": "Hi Ann, how can I help?"},
        {"role": "user", "content": "When do you open?"},
    ]
    assert [t["function"]["name"] for t in sent["tools"]] == ["end_call"]  # no transfer target
    assert agent.history[-1].content == "We open at eight."


async def test_end_call_tool(llm: OpenAILLM, fake_openai: FakeOpenAI) -> None:
    agent = PromptAgent(llm, prompt="Be helpful.")
    fake_openai.replies.append(Reply(events=tool_events("end_call", '{"reason": "done"}', text="Goodbye!")))
    events = await collect(agent.respond("Thanks, bye."))
    assert events == [AgentText("Goodbye!"), AgentEndCall()]


async def test_transfer_goes_to_the_configured_target(llm: OpenAILLM, fake_openai: FakeOpenAI) -> None:
    agent = PromptAgent(llm, prompt="Be helpful.", transfer_target="+15550100")
    fake_openai.replies.append(Reply(events=tool_events("transfer_call", '{"target": "+19990000"}')))
    events = await collect(agent.respond("Give me a human."))
    assert events == [AgentTransfer(target="+15550100")]
    assert {t["function"]["name"] for t in fake_openai.requests[0]["tools"]} == {"end_call", "transfer_call"}


async def test_interruption_keeps_only_what_was_heard(llm: OpenAILLM, fake_openai: FakeOpenAI) -> None:
    agent = PromptAgent(llm, prompt="Be helpful.")
    fake_openai.replies.append(
        Reply(events=text_events("We are open from eight", " until six", " on weekdays."))
    )
    await collect(agent.respond("Hours?"))
    agent.on_interrupted("We are open from eight")
    assert agent.history[-1].content == "We are open from eight"
    fake_openai.replies.append(Reply(events=text_events("Sure.")))
    await collect(agent.respond("And Saturday?"))
    assert fake_openai.requests[-1]["messages"][-2] == {
        "role": "assistant",
        "content": "We are open from eight",
    }
    agent.on_interrupted("")  # nothing of "Sure." was heard
    assert agent.history[-1].content == "And Saturday?"


async def test_abandoned_answer_is_recorded_then_truncated(llm: OpenAILLM, fake_openai: FakeOpenAI) -> None:
    agent = PromptAgent(llm, prompt="Be helpful.")
    fake_openai.replies.append(Reply(events=text_events("One moment"), hang=True))
    stream = agent.respond("Hello?")
    assert await anext(stream) == AgentText("One moment")
    await stream.aclose()  # barge-in
    assert agent.history[-1].content == "One moment"
    agent.on_interrupted("One")
    assert agent.history[-1].content == "One"


async def test_a_turn_taken_back_leaves_the_history_as_before(
    llm: OpenAILLM, fake_openai: FakeOpenAI
) -> None:
    agent = PromptAgent(llm, prompt="Be helpful.", initial_message="Hello, how can I help?")
    await collect(agent.greet())
    fake_openai.replies.append(Reply(events=text_events("Sure, what", " day would suit you?")))
    await collect(agent.respond("I need an appointment."))
    agent.on_interrupted("Sure, what")  # the caller went on over it
    assert agent.take_back()
    assert [(m.role, m.content) for m in agent.history] == [("assistant", "Hello, how can I help?")]
    assert not agent.take_back()  # once
    fake_openai.replies.append(Reply(events=text_events("Tuesday it is.")))
    await collect(agent.respond("I need an appointment. For my daughter on Tuesday."))
    assert fake_openai.requests[-1]["messages"][1:] == [
        {"role": "assistant", "content": "Hello, how can I help?"},
        {"role": "user", "content": "I need an appointment. For my daughter on Tuesday."},
    ]


async def test_an_answer_that_called_a_tool_is_not_taken_back(
    llm: OpenAILLM, fake_openai: FakeOpenAI
) -> None:
    agent = PromptAgent(llm, prompt="Be helpful.", transfer_target="+15550100")
    fake_openai.replies.append(Reply(events=tool_events("transfer_call", "{}")))
    assert await collect(agent.respond("A human please.")) == [AgentTransfer(target="+15550100")]
    before = list(agent.history)
    assert not agent.take_back() and agent.history == before


async def test_a_reminder_is_in_the_history_the_model_sees(llm: OpenAILLM, fake_openai: FakeOpenAI) -> None:
    agent = PromptAgent(llm, prompt="Be helpful.", initial_message="Hi, how can I help?")
    await collect(agent.greet())
    assert await collect(agent.remind("Are you still there?")) == [AgentText("Are you still there?")]
    agent.on_interrupted("Are you")  # the caller spoke over it: only what they heard stays
    fake_openai.replies.append(Reply(events=text_events("Great.")))
    await collect(agent.respond("Yes, sorry."))
    assert fake_openai.requests[0]["messages"][1:] == [
        {"role": "assistant", "content": "Hi, how can I help?"},
        {"role": "assistant", "content": "Are you"},
        {"role": "user", "content": "Yes, sorry."},
    ]
