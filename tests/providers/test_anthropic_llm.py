"""AnthropicLLM against a local fake of the Messages API: streamed text, streamed tool use (several
calls in one turn), the history mapped onto Anthropic's shape, HTTP and in-stream errors."""

from __future__ import annotations

import pytest

from callgate.errors import ProviderAuthFailed, ProviderError, ProviderRateLimited, ProviderUnavailable
from callgate.pipeline.interfaces import ChatMessage, LLMChunk, ToolSpec
from callgate.providers.anthropic import AnthropicLLM
from tests.support.fake_anthropic import KEY, FakeAnthropic, Reply, error_event, text_events, tool_events

HELLO = [ChatMessage(role="system", content="Be brief."), ChatMessage(role="user", content="Hi")]
LOOKUP = ToolSpec(
    name="lookup_order",
    description="Find an order",
    parameters={"type": "object", "properties": {"order": {"type": "string"}}},
)


async def chat(fake: FakeAnthropic, messages: list[ChatMessage], **kwargs: object) -> list[LLMChunk]:
    llm = AnthropicLLM(model="claude-test", api_key=KEY, base_url=fake.base_url, temperature=0.3)
    try:
        return [c async for c in llm.chat(messages, **kwargs)]  # type: ignore[arg-type]
    finally:
        await llm.aclose()


async def test_streams_text_and_sends_the_documented_request(fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.replies.append(Reply(events=text_events("Hello", " there", "!")))
    chunks = await chat(fake_anthropic, HELLO)
    assert [c.text for c in chunks] == ["Hello", " there", "!"]
    body, headers = fake_anthropic.requests[0], fake_anthropic.headers[0]
    assert body["model"] == "claude-test" and body["stream"] is True and body["max_tokens"] == 1024
    assert body["system"] == "Be brief." and body["temperature"] == 0.3
    assert body["messages"] == [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}]
    assert headers["x-api-key"] == KEY and headers["anthropic-version"] == "2023-06-01"


async def test_tool_use_is_streamed_assembled_and_results_go_back(fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.replies.append(
        Reply(
            events=tool_events(
                ("toolu_1", "lookup_order", '{"order": "A-1234"}'),
                ("toolu_2", "lookup_order", '{"order": "B-77"}'),
                text="Let me check.",
            )
        )
    )
    chunks = await chat(fake_anthropic, HELLO, tools=[LOOKUP])
    assert "".join(c.text for c in chunks) == "Let me check."
    calls = [call for c in chunks for call in c.tool_calls]
    assert [(c.id, c.name, c.arguments) for c in calls] == [
        ("toolu_1", "lookup_order", {"order": "A-1234"}),
        ("toolu_2", "lookup_order", {"order": "B-77"}),
    ]
    assert fake_anthropic.requests[0]["tools"] == [
        {"name": "lookup_order", "description": "Find an order", "input_schema": LOOKUP.parameters}
    ]

    # The second pass: both tool results go back as one user turn of tool_result blocks.
    history = [
        *HELLO,
        ChatMessage(role="assistant", content="Let me check."),
        ChatMessage(
            role="tool", content='{"status": "shipped"}', name="lookup_order", tool_call_id="toolu_1"
        ),
        ChatMessage(role="tool", content='{"status": "lost"}', name="lookup_order", tool_call_id="toolu_2"),
    ]
    fake_anthropic.replies.append(Reply(events=text_events("The first shipped; the second is lost.")))
    chunks = await chat(fake_anthropic, history, tools=[LOOKUP])
    assert "".join(c.text for c in chunks) == "The first shipped; the second is lost."
    sent = fake_anthropic.requests[1]["messages"]
    assert [turn["role"] for turn in sent] == ["user", "assistant", "user"]
    assert sent[2]["content"] == [
        {"type": "tool_result", "tool_use_id": "toolu_1", "content": '{"status": "shipped"}'},
        {"type": "tool_result", "tool_use_id": "toolu_2", "content": '{"status": "lost"}'},
    ]


async def test_http_errors_map_onto_ours(fake_anthropic: FakeAnthropic) -> None:
    llm = AnthropicLLM(model="m", api_key="wrong", base_url=fake_anthropic.base_url)
    try:
        with pytest.raises(ProviderAuthFailed, match="invalid x-api-key"):
            [c async for c in llm.chat(HELLO)]
    finally:
        await llm.aclose()
    for status, kind, error in (
        (429, "rate_limit_error", ProviderRateLimited),
        (529, "overloaded_error", ProviderUnavailable),
        (400, "invalid_request_error", ProviderError),
    ):
        fake_anthropic.replies.append(Reply(status=status, error_type=kind, error=f"nope {kind}"))
        with pytest.raises(error, match=f"nope {kind}"):
            await chat(fake_anthropic, HELLO)


async def test_an_error_event_mid_stream_is_raised_after_the_text_so_far(
    fake_anthropic: FakeAnthropic,
) -> None:
    events = text_events("Part one.", " Part two.")
    fake_anthropic.replies.append(Reply(events=[*events[:4], error_event()]))
    llm = AnthropicLLM(model="m", api_key=KEY, base_url=fake_anthropic.base_url)
    seen: list[str] = []
    try:
        with pytest.raises(ProviderUnavailable, match="overloaded_error"):
            async for chunk in llm.chat(HELLO):
                seen.append(chunk.text)
    finally:
        await llm.aclose()
    assert seen == ["Part one."]


async def test_unreachable_server_is_unavailable() -> None:
    llm = AnthropicLLM(model="m", api_key=KEY, base_url="http://127.0.0.1:9", timeout=2)
    try:
        with pytest.raises(ProviderUnavailable):
            [c async for c in llm.chat(HELLO)]
    finally:
        await llm.aclose()
