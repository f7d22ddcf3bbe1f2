"""Chat completions from any OpenAI-compatible server (OpenAI, Ollama, vLLM, llama.cpp), streamed.

Speaks the wire protocol directly over httpx: ``POST {base_url}/chat/completions`` with
``"stream": true`` answers with server-sent events, one JSON chunk per ``data:`` line and a final
``data: [DONE]``. Tool calls arrive in pieces keyed by ``index``: the id and name first, then the JSON
``arguments`` string in fragments; they are assembled and emitted once complete.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
from pydantic import SecretStr

from callgate.errors import (
    ProviderAuthFailed,
    ProviderError,
    ProviderRateLimited,
    ProviderTimeout,
    ProviderUnavailable,
)
from callgate.pipeline.interfaces import LLM, ChatMessage, LLMCapabilities, LLMChunk, ToolCall, ToolSpec
from callgate.providers._sse import SSEParser, read_in_task

__all__ = ["OpenAILLM"]

log = logging.getLogger(__name__)


@dataclass
class _PartialCall:
    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)

    def complete(self) -> ToolCall:
        # Arguments the model got wrong are the model's mistake, not the server's: the call is handed
        # on with an error, which the agent answers as a tool error so the model can try again.
        raw = "".join(self.arguments).strip() or "{}"
        try:
            arguments = json.loads(raw)
        except json.JSONDecodeError:
            return self._bad(raw, "the arguments are not JSON")
        if not isinstance(arguments, dict):
            return self._bad(raw, "the arguments are not a JSON object")
        return ToolCall(id=self.id, name=self.name, arguments=arguments)

    def _bad(self, raw: str, error: str) -> ToolCall:
        return ToolCall(id=self.id, name=self.name, arguments={}, error=error, raw_arguments=raw[:2000])


def _caused(error: ProviderError, cause: BaseException) -> ProviderError:
    error.__cause__ = cause
    return error


def _message(message: ChatMessage) -> dict[str, Any]:
    body: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.name:
        body["name"] = message.name
    if message.tool_call_id:
        body["tool_call_id"] = message.tool_call_id
    if message.tool_calls:
        body["content"] = message.content or None
        body["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {
                    "name": call.name,
                    "arguments": call.raw_arguments
                    if call.raw_arguments is not None
                    else json.dumps(call.arguments, ensure_ascii=False),
                },
            }
            for call in message.tool_calls
        ]
    return body


def _tool(tool: ToolSpec) -> dict[str, Any]:
    parameters = tool.parameters or {"type": "object", "properties": {}}
    return {
        "type": "function",
        "function": {"name": tool.name, "description": tool.description, "parameters": parameters},
    }


async def _raise_for_status(response: httpx.Response) -> None:
    if response.status_code < 400:
        return
    body = (await response.aread())[:500].decode(errors="replace")
    try:
        detail = str(json.loads(body)["error"]["message"])
    except (ValueError, KeyError, TypeError):
        detail = body or response.reason_phrase
    message = f"LLM server answered {response.status_code}: {detail}"
    if response.status_code in (401, 403):
        raise ProviderAuthFailed(message)
    if response.status_code == 429:
        raise ProviderRateLimited(message)
    if response.status_code >= 500:
        raise ProviderUnavailable(message)
    raise ProviderError(message)


class OpenAILLM(LLM):
    """Streaming chat against ``{base_url}/chat/completions``.

    One connection pool per instance, shared by every call that uses it; :meth:`aclose` closes it.
    ``timeout`` bounds connecting and each wait for the next chunk (not the whole answer).
    """

    def __init__(
        self,
        *,
        model: str,
        base_url: str = "https://api.openai.com/v1",
        api_key: SecretStr | str | None = None,
        timeout: float = 30.0,
        temperature: float | None = None,
        max_tokens: int | None = None,
        extra_body: dict[str, Any] | None = None,
    ) -> None:
        if isinstance(api_key, str):
            api_key = SecretStr(api_key)
        headers = {"Accept": "text/event-stream"}
        if api_key is not None and api_key.get_secret_value():
            headers["Authorization"] = f"Bearer {api_key.get_secret_value()}"
        self.model = model
        self._options: dict[str, Any] = dict(extra_body or {})
        if temperature is not None:
            self._options["temperature"] = temperature
        if max_tokens is not None:
            self._options["max_tokens"] = max_tokens
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/") + "/",
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
        )
        self.capabilities = LLMCapabilities(streaming=True, tools=True)

    async def chat(
        self, messages: Sequence[ChatMessage], *, tools: Sequence[ToolSpec] = ()
    ) -> AsyncIterator[LLMChunk]:
        body: dict[str, Any] = {
            **self._options,
            "model": self.model,
            "messages": [_message(m) for m in messages],
            "stream": True,
        }
        if tools:
            body["tools"] = [_tool(t) for t in tools]
        async with contextlib.aclosing(
            read_in_task(functools.partial(self._read, body), "openai-chat-stream")
        ) as items:
            async for item in items:
                yield item

    async def _read(self, body: dict[str, Any], queue: asyncio.Queue[LLMChunk | Exception | None]) -> None:
        calls: dict[int, _PartialCall] = {}
        try:
            async with self._client.stream("POST", "chat/completions", json=body) as response:
                await _raise_for_status(response)
                parser = SSEParser()
                done = False
                # Read to the end even after [DONE] (servers close right after it): leaving httpx's
                # iterators half-way would leave them to the garbage collector.
                async for line in response.aiter_lines():
                    data = parser.feed(line)
                    if data is None or done:
                        continue
                    done = data.strip() == "[DONE]"
                    chunk = None if done else self._parse(data, calls)
                    if chunk is not None:
                        queue.put_nowait(chunk)
                    if done:
                        self._flush(calls, queue)
                if not done:  # a server that ends without [DONE]
                    tail = parser.flush()
                    if tail is not None and tail.strip() != "[DONE]":
                        chunk = self._parse(tail, calls)
                        if chunk is not None:
                            queue.put_nowait(chunk)
                    self._flush(calls, queue)
        except httpx.TimeoutException as exc:
            queue.put_nowait(_caused(ProviderTimeout(f"LLM server timed out: {exc!r}"), exc))
        except httpx.TransportError as exc:
            queue.put_nowait(_caused(ProviderUnavailable(f"cannot reach the LLM server: {exc!r}"), exc))
        except ProviderError as exc:
            queue.put_nowait(exc)
        except Exception as exc:  # a malformed chunk: the consumer must hear of it, not wait forever
            queue.put_nowait(_caused(ProviderError(f"unexpected answer from the LLM server: {exc!r}"), exc))

    @staticmethod
    def _flush(calls: dict[int, _PartialCall], queue: asyncio.Queue[LLMChunk | Exception | None]) -> None:
        if calls:  # servers that end without a finish_reason
            queue.put_nowait(LLMChunk(tool_calls=tuple(c.complete() for _, c in sorted(calls.items()))))
            calls.clear()
        queue.put_nowait(None)

    @staticmethod
    def _parse(data: str, calls: dict[int, _PartialCall]) -> LLMChunk | None:
        try:
            event = json.loads(data)
        except json.JSONDecodeError as exc:
            raise ProviderError(f"LLM server sent an event that is not JSON: {data[:200]}") from exc
        if not isinstance(event, dict):
            raise ProviderError("LLM server sent an event that is not a JSON object")
        if "error" in event:
            error = event["error"]
            message = error.get("message", error) if isinstance(error, dict) else error
            raise ProviderError(f"LLM server error: {message}")
        choices = event.get("choices") or []
        if not choices:
            return None  # e.g. a usage-only chunk
        choice = choices[0]
        delta = choice.get("delta") or {}
        for piece in delta.get("tool_calls") or []:
            partial = calls.setdefault(int(piece.get("index", 0)), _PartialCall())
            partial.id = piece.get("id") or partial.id
            function = piece.get("function") or {}
            partial.name = function.get("name") or partial.name
            if function.get("arguments"):
                partial.arguments.append(function["arguments"])
        done: tuple[ToolCall, ...] = ()
        if choice.get("finish_reason") and calls:
            done = tuple(c.complete() for _, c in sorted(calls.items()))
            calls.clear()
        text = delta.get("content") or ""
        return LLMChunk(text=text, tool_calls=done) if text or done else None

    async def aclose(self) -> None:
        await self._client.aclose()
