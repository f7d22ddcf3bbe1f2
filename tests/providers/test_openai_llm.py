"""OpenAILLM against a real local HTTP server speaking the OpenAI SSE wire format."""

from __future__ import annotations

import asyncio
import socket

import pytest

from callgate.errors import (
    ProviderAuthFailed,
    ProviderError,
    ProviderRateLimited,
    ProviderTimeout,
    ProviderUnavailable,
)
from callgate.pipeline.interfaces import ChatMessage, LLMChunk, ToolSpec
from callgate.providers.openai import OpenAILLM
from tests.support.fake_openai import FakeOpenAI, Reply, text_events, tool_events

HELLO = [ChatMessage(role="system", content="Be brief."), ChatMessage(role="user", content="Hi")]
END_CALL = ToolSpec(name="end_call", description="End the call", parameters={"type": "object"})


async def collect(llm: OpenAILLM, **kwargs: object) -> list[LLMChunk]:
    return [chunk async for chunk in llm.chat(HELLO, **kwargs)]  # type: ignore[arg-type]


async def test_streams_text_deltas_and_sends_the_request(fake_openai: FakeOpenAI) -> None:
    fake_openai.replies.append(Reply(events=text_events("Hello", " there", "!")))
    llm = OpenAILLM(model="m1", base_url=fake_openai.base_url, api_key="sk-test", temperature=0.2)
    try:
        chunks = await collect(llm)
    finally:
        await llm.aclose()
    assert [c.text for c in chunks] == ["Hello", " there", "!"]
    body = fake_openai.requests[0]
    assert body["model"] == "m1" and body["stream"] is True and body["temperature"] == 0.2
    assert body["messages"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    assert "tools" not in body
    assert fake_openai.headers[0]["authorization"] == "Bearer sk-test"


async def test_assembles_tool_call_arguments_streamed_in_pieces(fake_openai: FakeOpenAI) -> None:
    arguments = '{"reason": "caller said goodbye", "n": 2}'
    fake_openai.replies.append(Reply(events=tool_events("end_call", arguments, text="Goodbye!")))
    llm = OpenAILLM(model="m", base_url=fake_openai.base_url)
    try:
        chunks = await collect(llm, tools=[END_CALL])
    finally:
        await llm.aclose()
    assert "".join(c.text for c in chunks) == "Goodbye!"
    calls = [call for c in chunks for call in c.tool_calls]
    assert len(calls) == 1
    assert calls[0].id == "call_1" and calls[0].name == "end_call"
    assert calls[0].arguments == {"reason": "caller said goodbye", "n": 2}
    sent = fake_openai.requests[0]["tools"]
    assert sent == [{"type": "function", "function": {"name": "end_call", "description": "End the call",
                                                      "parameters": {"type": "object"}}}]  # fmt: skip
    assert "authorization" not in fake_openai.headers[0]


async def test_ignores_comments_and_other_sse_fields(fake_openai: FakeOpenAI) -> None:
    raw = [": keep-alive\n\n", "event: message\nid: 7\nretry: 100\n\n"]
    fake_openai.replies.append(Reply(events=text_events("ok"), raw=raw))
    llm = OpenAILLM(model="m", base_url=fake_openai.base_url)
    try:
        assert [c.text for c in await collect(llm)] == ["ok"]
    finally:
        await llm.aclose()


@pytest.mark.parametrize(
    ("status", "error"),
    [(401, ProviderAuthFailed), (429, ProviderRateLimited), (500, ProviderUnavailable), (404, ProviderError)],
)
async def test_http_errors_become_our_errors(fake_openai: FakeOpenAI, status: int, error: type) -> None:
    fake_openai.replies.append(Reply(status=status, error="model 'm' says no"))
    llm = OpenAILLM(model="m", base_url=fake_openai.base_url)
    try:
        with pytest.raises(error, match="model 'm' says no") as info:
            await collect(llm)
    finally:
        await llm.aclose()
    assert info.value.code.startswith("provider_")


async def test_error_event_in_the_stream(fake_openai: FakeOpenAI) -> None:
    fake_openai.replies.append(Reply(events=[{"error": {"message": "overloaded"}}]))
    llm = OpenAILLM(model="m", base_url=fake_openai.base_url)
    try:
        with pytest.raises(ProviderError, match="overloaded"):
            await collect(llm)
    finally:
        await llm.aclose()


async def test_unreachable_server() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    llm = OpenAILLM(model="m", base_url=f"http://127.0.0.1:{port}/v1", timeout=2)
    try:
        with pytest.raises(ProviderUnavailable):
            await collect(llm)
    finally:
        await llm.aclose()


async def test_read_timeout(fake_openai: FakeOpenAI) -> None:
    fake_openai.replies.append(Reply(events=text_events("late"), delay=1.0))
    llm = OpenAILLM(model="m", base_url=fake_openai.base_url, timeout=0.2)
    try:
        with pytest.raises(ProviderTimeout):
            await collect(llm)
    finally:
        await llm.aclose()


async def test_abandoning_the_stream_closes_the_connection(fake_openai: FakeOpenAI) -> None:
    fake_openai.replies.append(Reply(events=text_events("first"), hang=True))
    llm = OpenAILLM(model="m", base_url=fake_openai.base_url)
    try:
        stream = llm.chat(HELLO)
        first = await anext(stream)
        assert first.text == "first"
        await stream.aclose()  # what cancelling the consumer does (barge-in)
        assert await asyncio.to_thread(fake_openai.disconnected.wait, 5)
    finally:
        await llm.aclose()


async def test_cancelling_the_consumer_task_closes_the_connection(fake_openai: FakeOpenAI) -> None:
    fake_openai.replies.append(Reply(events=text_events("first"), hang=True))
    llm = OpenAILLM(model="m", base_url=fake_openai.base_url)
    got_first = asyncio.Event()

    async def consume() -> None:
        async for _ in llm.chat(HELLO):
            got_first.set()

    task = asyncio.create_task(consume())
    try:
        await asyncio.wait_for(got_first.wait(), 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await asyncio.to_thread(fake_openai.disconnected.wait, 5)
    finally:
        await llm.aclose()
