"""PromptAgent's tool loop on OpenAILLM against the local fake OpenAI server, with a scripted tool host:
results fed back for a second pass, barge-in that abandons the answer but not the tool, history kept
valid for the next request."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest

from callgate.flows import PromptAgent
from callgate.pipeline.interfaces import AgentText
from callgate.pipeline.sentences import SentenceSplitter
from callgate.pipeline.tools import ToolDefinition
from callgate.providers.openai import OpenAILLM
from tests.support.fake_openai import FakeOpenAI, Reply, text_events, tool_events
from tests.support.tool_host import ScriptedHost

SLOW = ToolDefinition(
    kind="http", name="book_slot", description="Book a slot.", message="One moment.", timeout_ms=5000
)


@pytest.fixture
async def llm(fake_openai: FakeOpenAI) -> AsyncIterator[OpenAILLM]:
    client = OpenAILLM(model="m", base_url=fake_openai.base_url)
    yield client
    await client.aclose()


async def test_result_goes_back_for_a_second_pass(llm: OpenAILLM, fake_openai: FakeOpenAI) -> None:
    agent = PromptAgent(llm, prompt="Book slots.", tools=[SLOW])
    host = ScriptedHost()
    agent.bind(host)
    fake_openai.replies += [
        Reply(events=tool_events("book_slot", '{"at": "09:00"}')),
        Reply(events=text_events("Booked for nine.")),
    ]
    events = [e async for e in agent.respond("Nine please.")]
    # The message ends its sentence (a trailing space), so it is spoken while the tool runs.
    assert events == [AgentText("One moment. "), AgentText("Booked for nine.")]
    assert [r.outcome.result for r in host.records] == [{"booked": {"at": "09:00"}}]
    assert [m.role for m in agent.history] == ["user", "assistant", "tool", "assistant"]
    assert agent.history[1].content == "One moment." and agent.history[1].tool_calls[0].name == "book_slot"


async def test_barge_in_drops_the_spoken_result_not_the_side_effect(
    llm: OpenAILLM, fake_openai: FakeOpenAI
) -> None:
    agent = PromptAgent(llm, prompt="Book slots.", tools=[SLOW])
    host = ScriptedHost(delay=0.3)
    agent.bind(host)
    fake_openai.replies += [
        Reply(events=tool_events("book_slot", '{"at": "09:00"}')),
        Reply(events=text_events("Anything else?")),
    ]
    stream = agent.respond("Nine please.")
    first = await anext(stream)
    assert host.ran == [] and SentenceSplitter().push(first.text) == ["One moment."]  # heard while it runs
    waiting = asyncio.ensure_future(anext(stream))
    await asyncio.sleep(0.05)
    waiting.cancel()  # the caller barges in while the tool runs
    with pytest.raises(asyncio.CancelledError):
        await waiting
    await stream.aclose()
    agent.on_interrupted("One moment.")
    await asyncio.wait_for(host.recorded.wait(), 2)
    assert host.ran == [{"at": "09:00"}]  # the booking happened
    assert host.records[0].interrupted is True
    assert len(fake_openai.requests) == 1  # nothing more was asked of the model for that answer

    events = [e async for e in agent.respond("Thanks.")]
    assert events == [AgentText("Anything else?")]
    sent = fake_openai.requests[1]["messages"]
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "tool", "user"]
    assert json.loads(sent[3]["content"]) == {"booked": {"at": "09:00"}}  # the model learns it happened
    await agent.aclose()


async def test_wait_keeps_the_agent_quiet(llm: OpenAILLM, fake_openai: FakeOpenAI) -> None:
    agent = PromptAgent(
        llm, prompt="Be patient.", tools=[ToolDefinition(kind="wait", name="wait", description="")]
    )
    fake_openai.replies.append(Reply(events=tool_events("wait", "{}", text="Take your time.")))
    events = [e async for e in agent.respond("Hold on, let me find my card.")]
    assert events == [AgentText("Take your time.")]
    assert len(fake_openai.requests) == 1  # no second pass
