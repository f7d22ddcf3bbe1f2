"""A real webhook receiver for tests: Starlette on uvicorn in a thread, on a fixed port it can leave and
come back to. It verifies every request with the ``standardwebhooks`` library against the secrets it is
given and answers from a script (status codes, delays, redirects) or 204 by default. A ``GET`` carries
its payload as query parameters, and its signature covers the raw query string instead of a body.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import uvicorn
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from tests.support.services import free_port


@dataclass(frozen=True)
class Reply:
    status: int = 204
    delay: float = 0.0
    location: str | None = None
    body: str = ""
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Hit:
    path: str
    method: str
    headers: dict[str, str]
    body: bytes
    status: int
    verified_by: list[str]
    """Names of the secrets whose signature matched."""
    at: float
    query: str = ""
    """The raw query string."""

    @property
    def payload(self) -> dict[str, Any]:
        """The JSON body, or for a ``GET`` the query parameters (values as sent: text)."""
        if self.method == "GET":
            return dict(parse_qsl(self.query, keep_blank_values=True, strict_parsing=True))
        data: dict[str, Any] = json.loads(self.body)
        return data

    @property
    def id(self) -> str:
        return self.headers["webhook-id"]

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


class Receiver:
    def __init__(self, *, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = free_port()
        self.secrets: dict[str, str] = {}
        self.script: deque[Reply] = deque()
        self.default = Reply()
        self.hits: list[Hit] = []
        self.arrivals = 0
        """Requests that came in (answered or not yet)."""
        self._lock = threading.Lock()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/hooks"

    # ------------------------------------------------------------------ the HTTP side

    async def _handle(self, request: Request) -> Response:
        body = await request.body()
        query = request.url.query
        headers = {k.lower(): v for k, v in request.headers.items()}
        get = request.method == "GET"
        verified = []
        for name, secret in self.secrets.items():
            try:
                # A query string is not JSON: the library checks it without parsing it.
                Webhook(secret).verify(query if get else body, headers, json_parse=not get)
                verified.append(name)
            except WebhookVerificationError:
                pass
        with self._lock:
            reply = self.script.popleft() if self.script else self.default
        with self._lock:
            self.arrivals += 1
        status = reply.status
        if reply.delay and not await self._wait(request, reply.delay):
            status = 499  # the sender went away (timed out, or died) before the answer
        with self._lock:
            self.hits.append(
                Hit(
                    request.url.path, request.method, headers, body, status, verified, time.monotonic(), query
                )
            )
        if reply.location is not None:
            return RedirectResponse(reply.location, status_code=reply.status)
        return Response(reply.body, status_code=reply.status, headers=reply.headers)

    @staticmethod
    async def _wait(request: Request, delay: float) -> bool:
        """Sleep ``delay`` seconds; False as soon as the client disconnects."""
        deadline = time.monotonic() + delay
        while time.monotonic() < deadline:
            try:
                message = await asyncio.wait_for(request.receive(), timeout=0.05)
            except TimeoutError:
                continue
            if message["type"] == "http.disconnect":
                return False
        return True

    def start(self) -> None:
        """Listen (again) on the receiver's port."""
        app = Starlette(routes=[Route("/{path:path}", self._handle, methods=["GET", "POST", "PUT", "PATCH"])])
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        config = uvicorn.Config(app, log_level="warning", lifespan="off", timeout_graceful_shutdown=1)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]}, daemon=True)
        self._thread.start()
        while not self._server.started:
            time.sleep(0.01)
        self._sock = sock

    def stop(self) -> None:
        """Stop listening: connections are refused until :meth:`start`."""
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._server.force_exit = True
            self._thread.join(timeout=10)
            self._sock.close()
        self._server = self._thread = None

    # ------------------------------------------------------------------ what tests read

    def acked(self) -> list[Hit]:
        with self._lock:
            return [h for h in self.hits if h.ok]

    def all(self) -> list[Hit]:
        with self._lock:
            return list(self.hits)

    async def wait_for(self, count: int, *, timeout: float = 20.0, acked: bool = True) -> list[Hit]:
        """Wait until ``count`` hits (acknowledged ones by default) arrived; return them all."""
        deadline = time.monotonic() + timeout
        while True:
            hits = self.acked() if acked else self.all()
            if len(hits) >= count:
                return hits
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"wanted {count} hits, got {len(hits)}: {[h.payload.get('type') for h in hits]}"
                )
            await asyncio.sleep(0.02)
