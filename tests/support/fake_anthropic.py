"""A local stand-in for Anthropic's Messages API: real HTTP, the documented SSE events and errors.

Tests queue replies (events, an HTTP error, or an ``error`` event mid-stream); the server records each
request body and its headers.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.support.fake_server import serving

KEY = "sk-ant-test"


@dataclass
class Reply:
    events: list[dict[str, Any]] = field(default_factory=list)
    status: int = 200
    error_type: str = "api_error"
    error: str = "something went wrong"
    delay: float = 0.0
    """Seconds before each event."""
    first_delay: float = 0.0
    """Seconds before the first event (time to first token)."""


def _start(model: str = "claude-test") -> dict[str, Any]:
    return {
        "type": "message_start",
        "message": {"id": "msg_1", "type": "message", "role": "assistant", "content": [], "model": model,
                    "stop_reason": None, "usage": {"input_tokens": 10, "output_tokens": 1}},
    }  # fmt: skip


def _stop(reason: str) -> list[dict[str, Any]]:
    return [
        {"type": "message_delta", "delta": {"stop_reason": reason, "stop_sequence": None},
         "usage": {"output_tokens": 12}},
        {"type": "message_stop"},
    ]  # fmt: skip


def text_events(*pieces: str) -> list[dict[str, Any]]:
    start = {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
    events = [_start(), start, {"type": "ping"}]
    events += [
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": p}}
        for p in pieces
    ]
    return [*events, {"type": "content_block_stop", "index": 0}, *_stop("end_turn")]


def tool_events(*calls: tuple[str, str, str], text: str = "") -> list[dict[str, Any]]:
    """``calls``: (id, name, JSON input) each, the input streamed in small ``input_json_delta`` pieces."""
    events: list[dict[str, Any]] = [_start()]
    index = 0
    if text:
        events += [
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}},
            {"type": "content_block_stop", "index": 0},
        ]
        index = 1
    for call_id, name, arguments in calls:
        block = {"type": "tool_use", "id": call_id, "name": name, "input": {}}
        events.append({"type": "content_block_start", "index": index, "content_block": block})
        for i in range(0, len(arguments), 5):
            delta = {"type": "input_json_delta", "partial_json": arguments[i : i + 5]}
            events.append({"type": "content_block_delta", "index": index, "delta": delta})
        events.append({"type": "content_block_stop", "index": index})
        index += 1
    return [*events, *_stop("tool_use")]


def error_event(kind: str = "overloaded_error", message: str = "Overloaded") -> dict[str, Any]:
    return {"type": "error", "error": {"type": kind, "message": message}}


class FakeAnthropic:
    def __init__(self) -> None:
        self.replies: list[Reply] = []
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.base_url = ""

    async def _messages(self, request: Request) -> Response:
        self.requests.append(await request.json())
        self.headers.append(dict(request.headers))
        if request.headers.get("x-api-key") != KEY:
            body = {
                "type": "error",
                "error": {"type": "authentication_error", "message": "invalid x-api-key"},
            }
            return JSONResponse(body, status_code=401)
        if request.headers.get("anthropic-version") != "2023-06-01":
            body = {"type": "error", "error": {"type": "invalid_request_error", "message": "bad version"}}
            return JSONResponse(body, status_code=400)
        reply = self.replies.pop(0) if self.replies else Reply(events=text_events("Hello."))
        if reply.status != 200:
            body = {"type": "error", "error": {"type": reply.error_type, "message": reply.error}}
            return JSONResponse(body, status_code=reply.status)

        async def stream() -> Any:
            await asyncio.sleep(reply.first_delay)
            for event in reply.events:
                if reply.delay:
                    await asyncio.sleep(reply.delay)
                yield f"event: {event['type']}\ndata: {json.dumps(event)}\n\n"

        return StreamingResponse(stream(), media_type="text/event-stream")

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/v1/messages", self._messages, methods=["POST"])])


@pytest.fixture
def fake_anthropic() -> Iterator[FakeAnthropic]:
    fake = FakeAnthropic()
    with serving(fake.app()) as address:
        fake.base_url = f"http://{address}"
        yield fake
