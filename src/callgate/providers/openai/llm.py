"""Chat completions from any OpenAI-compatible server (OpenAI, Ollama, vLLM, llama.cpp), streamed.

Speaks the wire protocol directly over httpx: ``POST {base_url}/chat/completions`` with
``"stream": true`` answers with server-sent events, one JSON chunk per ``data:`` line and a final
``data: [DONE]``. Tool calls arrive in pieces keyed by ``index``: the id and name first, then the JSON
``arguments`` string in fragments; they are assembled and emitted once complete.
"""

from __future__ import annotations

import contextlib
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

__all__ = ["OpenAILLM"]

log = logging.getLogger(__name__)


@dataclass
class _PartialCall:
    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)

    def complete(self) -> ToolCall:
        raw = "".join(self.arguments).strip() or "{}"
        try:
            arguments = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ProviderError(
                f"tool call {self.name!r} has arguments that are not JSON: {raw[:200]}"
            ) from exc
        if not isinstance(arguments, dict):
            raise ProviderError(f"tool call {self.name!r} arguments are not a JSON object")
        return ToolCall(id=self.id, name=self.name, arguments=arguments)


def _message(message: ChatMessage) -> dict[str, Any]:
    body: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.name:
        body["name"] = message.name
    if message.tool_call_id:
        body["tool_call_id"] = message.tool_call_id
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


class _SSEParser:
    """Server-sent events, line by line: returns an event's ``data`` (multi-line data joined by
    newlines) when its blank line arrives. Comments and ``event:``/``id:``/``retry:`` are ignored."""

    def __init__(self) -> None:
        self._data: list[str] = []

    def feed(self, line: str) -> str | None:
        if line.startswith("data:"):
            self._data.append(line[5:].removeprefix(" "))
        elif not line and self._data:
            return self.flush()
        return None

    def flush(self) -> str | None:
        data, self._data = self._data, []
        return "\n".join(data) if data else None


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
        calls: dict[int, _PartialCall] = {}
        try:
            async with self._client.stream("POST", "chat/completions", json=body) as response:
                await _raise_for_status(response)
                parser = _SSEParser()
                # aclosing: an abandoned line iterator must not be left for the GC to finalize.
                async with contextlib.aclosing(response.aiter_lines()) as lines:
                    async for line in lines:
                        data = parser.feed(line)
                        if data is None:
                            continue
                        if data.strip() == "[DONE]":
                            break
                        chunk = self._parse(data, calls)
                        if chunk is not None:
                            yield chunk
        except httpx.TimeoutException as exc:
            raise ProviderTimeout(f"LLM server timed out: {exc!r}") from exc
        except httpx.TransportError as exc:
            raise ProviderUnavailable(f"cannot reach the LLM server: {exc!r}") from exc
        if calls:  # servers that end without a finish_reason
            yield LLMChunk(tool_calls=tuple(c.complete() for _, c in sorted(calls.items())))

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
