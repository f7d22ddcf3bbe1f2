"""A local stand-in for an OpenAI-compatible server: real HTTP (uvicorn), real SSE wire format.

Tests queue replies; the server records each request and notices when a client goes away.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import socket
import threading
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route


@dataclass
class Reply:
    events: list[dict[str, Any]] = field(default_factory=list)
    status: int = 200
    error: str = "something went wrong"
    delay: float = 0.0
    """Seconds between events."""
    hang: bool = False
    """Keep the stream open after the events (no [DONE])."""
    raw: list[str] = field(default_factory=list)
    """Extra raw SSE text sent before the events (comments, odd lines)."""
    first_token_delay: float = 0.0
    """Seconds before the first event (a model's time to first token)."""


def text_events(*pieces: str, model: str = "fake-model") -> list[dict[str, Any]]:
    """Chunks as OpenAI streams them: role first, then content deltas, then finish_reason."""
    base = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": model}
    events = [{**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}]
    events += [{**base, "choices": [{"index": 0, "delta": {"content": p}}]} for p in pieces]
    events.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    return events


def tool_events(
    name: str, arguments: str, *, text: str = "", call_id: str = "call_1"
) -> list[dict[str, Any]]:
    """A tool call streamed like OpenAI does: id+name, then the arguments in small fragments."""
    base = {"id": "chatcmpl-2", "object": "chat.completion.chunk", "created": 1, "model": "fake-model"}
    events: list[dict[str, Any]] = []
    if text:
        events.append({**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": text}}]})
    head = {"index": 0, "id": call_id, "type": "function", "function": {"name": name, "arguments": ""}}
    events.append({**base, "choices": [{"index": 0, "delta": {"tool_calls": [head]}}]})
    for i in range(0, len(arguments), 4):
        piece = {"index": 0, "function": {"arguments": arguments[i : i + 4]}}
        events.append({**base, "choices": [{"index": 0, "delta": {"tool_calls": [piece]}}]})
    events.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]})
    return events


def tool_calls_events(calls: list[tuple[str, str, str]], *, text: str = "") -> list[dict[str, Any]]:
    """Several tool calls in one answer, ``(name, arguments, call_id)`` each, streamed interleaved by
    ``index`` as OpenAI does for parallel calls."""
    base = {"id": "chatcmpl-3", "object": "chat.completion.chunk", "created": 1, "model": "fake-model"}
    events: list[dict[str, Any]] = []
    if text:
        events.append({**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": text}}]})
    for index, (name, _, call_id) in enumerate(calls):
        head = {
            "index": index,
            "id": call_id,
            "type": "function",
            "function": {"name": name, "arguments": ""},
        }
        events.append({**base, "choices": [{"index": 0, "delta": {"tool_calls": [head]}}]})
    longest = max(len(arguments) for _, arguments, _ in calls)
    for i in range(0, longest, 5):
        for index, (_, arguments, _) in enumerate(calls):
            if arguments[i : i + 5]:
                piece = {"index": index, "function": {"arguments": arguments[i : i + 5]}}
                events.append({**base, "choices": [{"index": 0, "delta": {"tool_calls": [piece]}}]})
    events.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]})
    return events


class FakeOpenAI:
    def __init__(self) -> None:
        self.replies: list[Reply] = []
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.disconnected = threading.Event()
        self.base_url = ""
        self.in_flight = 0
        self.max_in_flight = 0
        """The most requests answered at the same time."""
        self.answer: Callable[[dict[str, Any]], Reply | Awaitable[Reply]] | None = None
        """Makes the reply to a request when none is queued (default: "Hello.")."""

    async def _chat(self, request: Request) -> Response:
        body = await request.json()
        self.requests.append(body)
        self.headers.append(dict(request.headers))
        if self.replies:
            reply = self.replies.pop(0)
        elif self.answer is not None:
            made = self.answer(body)
            reply = await made if inspect.isawaitable(made) else made
        else:
            reply = Reply(events=text_events("Hello."))
        if reply.status != 200:
            body = {"error": {"message": reply.error, "type": "invalid_request_error", "code": None}}
            return JSONResponse(body, status_code=reply.status)

        async def stream() -> Any:
            finished = False
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            try:
                if reply.first_token_delay:
                    await asyncio.sleep(reply.first_token_delay)
                for line in reply.raw:
                    yield line
                for event in reply.events:
                    if reply.delay:
                        await asyncio.sleep(reply.delay)
                    yield f"data: {json.dumps(event)}\n\n"
                if reply.hang:
                    await asyncio.sleep(3600)
                yield "data: [DONE]\n\n"
                finished = True
            finally:
                self.in_flight -= 1
                if not finished:
                    self.disconnected.set()

        return StreamingResponse(stream(), media_type="text/event-stream")

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/v1/chat/completions", self._chat, methods=["POST"])])


def serve(fake: FakeOpenAI) -> Iterator[FakeOpenAI]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(fake.app(), log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        threading.Event().wait(0.01)
    fake.base_url = f"http://127.0.0.1:{port}/v1"
    try:
        yield fake
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@pytest.fixture(scope="session")
def openai_server() -> Iterator[FakeOpenAI]:
    yield from serve(FakeOpenAI())


@pytest.fixture
def fake_openai(openai_server: FakeOpenAI) -> FakeOpenAI:
    """The session's fake server, with no queued replies and no recorded requests."""
    openai_server.replies.clear()
    openai_server.requests.clear()
    openai_server.headers.clear()
    openai_server.disconnected.clear()
    return openai_server
