"""Anthropic's Messages API, streamed, with tool use.

Speaks the documented wire protocol over httpx: ``POST {base_url}/v1/messages`` with ``"stream": true``
(headers ``x-api-key`` and ``anthropic-version``) answers with server-sent events: ``message_start``,
then per content block ``content_block_start`` / ``content_block_delta`` / ``content_block_stop``,
``message_delta`` (the stop reason), ``message_stop``; ``ping`` at any time, and ``error`` (e.g.
``overloaded_error``) even after a 200. Text arrives as ``text_delta``; a tool call as a ``tool_use``
block whose JSON input arrives in ``input_json_delta`` fragments; a turn's tool calls are emitted
together, as :class:`ToolCall` s, when the message stops.

Callgate's chat history maps onto Anthropic's shape here: system messages become the ``system``
parameter; a ``tool`` message (``tool_call_id``) becomes a ``tool_result`` block of a user turn; an
assistant message carrying ``tool_calls`` (when the chat history holds them) becomes ``tool_use``
blocks; consecutive turns of one role are merged, since the API wants them alternating.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
from pydantic import SecretStr

from callgate.errors import ProviderError, ProviderRateLimited, ProviderUnavailable
from callgate.pipeline.interfaces import LLM, ChatMessage, LLMCapabilities, LLMChunk, ToolCall, ToolSpec
from callgate.providers._cloud import http_error, read_http_error
from callgate.providers._sse import SSEParser, read_in_task

__all__ = ["AnthropicLLM"]

VENDOR = "Anthropic"
API_VERSION = "2023-06-01"


@dataclass
class _ToolBlock:
    id: str
    name: str
    json: list[str] = field(default_factory=list)
    done: bool = False

    def complete(self) -> ToolCall:
        raw = "".join(self.json).strip() or "{}"
        try:
            arguments = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ProviderError(f"tool call {self.name!r} has input that is not JSON: {raw[:200]}") from exc
        if not isinstance(arguments, dict):
            raise ProviderError(f"tool call {self.name!r} input is not a JSON object")
        return ToolCall(id=self.id, name=self.name, arguments=arguments)


def _blocks(message: ChatMessage) -> list[dict[str, Any]]:
    if message.role == "tool":
        return [
            {"type": "tool_result", "tool_use_id": message.tool_call_id or "", "content": message.content}
        ]
    blocks: list[dict[str, Any]] = [{"type": "text", "text": message.content}] if message.content else []
    # The tools work adds the calls an assistant turn made to ChatMessage; read them when present.
    for call in getattr(message, "tool_calls", None) or ():
        blocks.append({"type": "tool_use", "id": call.id, "name": call.name, "input": call.arguments})
    return blocks


def to_anthropic(messages: Sequence[ChatMessage]) -> tuple[str, list[dict[str, Any]]]:
    """The ``system`` text and the alternating ``messages`` of a request."""
    system = "\n\n".join(m.content for m in messages if m.role == "system" and m.content)
    turns: list[dict[str, Any]] = []
    for message in messages:
        if message.role == "system":
            continue
        role = "assistant" if message.role == "assistant" else "user"
        blocks = _blocks(message)
        if not blocks:
            continue
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    return system, turns


def _tool(tool: ToolSpec) -> dict[str, Any]:
    schema = tool.parameters or {"type": "object", "properties": {}}
    return {"name": tool.name, "description": tool.description, "input_schema": schema}


def _stream_error(event: dict[str, Any]) -> ProviderError:
    error = event.get("error") or {}
    kind = str(error.get("type", "error")) if isinstance(error, dict) else "error"
    message = error.get("message", error) if isinstance(error, dict) else error
    text = f"{VENDOR} stream error ({kind}): {message}"
    if kind == "overloaded_error":
        return ProviderUnavailable(text)
    if kind == "rate_limit_error":
        return ProviderRateLimited(text)
    return ProviderError(text)


class AnthropicLLM(LLM):
    """Streaming chat against ``{base_url}/v1/messages``; one connection pool per instance.

    ``timeout`` bounds connecting and each wait for the next event (not the whole answer).
    """

    def __init__(
        self,
        *,
        model: str,
        api_key: SecretStr | str | None,
        base_url: str = "https://api.anthropic.com",
        timeout: float = 30.0,
        max_tokens: int = 1024,
        temperature: float | None = None,
    ) -> None:
        if isinstance(api_key, str):
            api_key = SecretStr(api_key)
        headers = {"anthropic-version": API_VERSION, "accept": "text/event-stream"}
        if api_key is not None and api_key.get_secret_value():
            headers["x-api-key"] = api_key.get_secret_value()
        self.model = model
        self._options: dict[str, Any] = {"max_tokens": max_tokens}
        if temperature is not None:
            self._options["temperature"] = temperature
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/") + "/",
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
        )
        self.capabilities = LLMCapabilities(streaming=True, tools=True)

    async def chat(
        self, messages: Sequence[ChatMessage], *, tools: Sequence[ToolSpec] = ()
    ) -> AsyncIterator[LLMChunk]:
        system, turns = to_anthropic(messages)
        body: dict[str, Any] = {**self._options, "model": self.model, "messages": turns, "stream": True}
        if system:
            body["system"] = system
        if tools:
            body["tools"] = [_tool(t) for t in tools]
        async with contextlib.aclosing(
            read_in_task(functools.partial(self._read, body), "anthropic-stream")
        ) as items:
            async for item in items:
                yield item

    async def _read(self, body: dict[str, Any], queue: asyncio.Queue[LLMChunk | Exception | None]) -> None:
        blocks: dict[int, _ToolBlock] = {}
        try:
            async with self._client.stream("POST", "v1/messages", json=body) as response:
                error = await read_http_error(VENDOR, response)
                if error is not None:
                    raise error
                parser = SSEParser()
                stopped = False
                async for line in response.aiter_lines():
                    data = parser.feed(line)
                    if data is None or stopped:
                        continue
                    stopped = self._event(data, blocks, queue)
                if not stopped:
                    raise ProviderUnavailable(f"{VENDOR} ended the stream before message_stop")
            queue.put_nowait(None)
        except httpx.HTTPError as exc:
            queue.put_nowait(http_error(VENDOR, exc))
        except ProviderError as exc:
            queue.put_nowait(exc)
        except Exception as exc:  # a malformed event: the consumer must hear of it, not wait forever
            error = ProviderError(f"unexpected answer from {VENDOR}: {exc!r}")
            error.__cause__ = exc
            queue.put_nowait(error)

    @staticmethod
    def _event(
        data: str, blocks: dict[int, _ToolBlock], queue: asyncio.Queue[LLMChunk | Exception | None]
    ) -> bool:
        """Handle one event; True once the message has stopped."""
        try:
            event = json.loads(data)
        except json.JSONDecodeError as exc:
            raise ProviderError(f"{VENDOR} sent an event that is not JSON: {data[:200]}") from exc
        kind = event.get("type") if isinstance(event, dict) else None
        if kind == "error":
            raise _stream_error(event)
        if kind == "content_block_start":
            block = event.get("content_block") or {}
            if block.get("type") == "tool_use":
                blocks[int(event["index"])] = _ToolBlock(id=str(block["id"]), name=str(block["name"]))
            elif block.get("type") == "text" and block.get("text"):
                queue.put_nowait(LLMChunk(text=str(block["text"])))
        elif kind == "content_block_delta":
            delta = event.get("delta") or {}
            if delta.get("type") == "text_delta" and delta.get("text"):
                queue.put_nowait(LLMChunk(text=str(delta["text"])))
            elif delta.get("type") == "input_json_delta":
                tool = blocks.get(int(event["index"]))
                if tool is not None:
                    tool.json.append(str(delta.get("partial_json", "")))
        elif kind == "content_block_stop":
            tool = blocks.get(int(event["index"]))
            if tool is not None:
                tool.done = True
        elif kind == "message_stop":
            # All of a turn's tool calls in one chunk at its end, as the OpenAI-compatible engine does.
            calls = tuple(blocks[i].complete() for i in sorted(blocks) if blocks[i].done)
            if calls:
                queue.put_nowait(LLMChunk(tool_calls=calls))
            return True
        return False  # message_start, message_delta, ping and unknown events carry nothing to say

    async def aclose(self) -> None:
        await self._client.aclose()
