"""Pure-ASGI middleware: body size cap, request log + metrics, the serving node's id, CORS for
browser-facing routes."""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from callgate.errors import BadRequest, PayloadTooLarge
from callgate.log import request_id_var
from callgate.metrics import Metrics

log = logging.getLogger("callgate.http")


class BodyLimit:
    """Refuse bodies over ``max_bytes`` with a 413 problem, before any route sees them."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        from callgate.api.problems import render  # the dialect's error shape, or problem+json

        error = PayloadTooLarge(f"the request body is over {self.max_bytes} bytes")
        await render(Request(scope), error)(scope, receive, send)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        if length is not None:
            if length.isdigit() and int(length) > self.max_bytes:
                await self._refuse(scope, receive, send)
                return
            await self.app(scope, receive, send)
            return
        if scope["method"] in ("GET", "HEAD", "OPTIONS", "DELETE"):
            await self.app(scope, receive, send)
            return
        # No Content-Length (chunked): read up to the cap, then replay the body to the app.
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_bytes:
                await self._refuse(scope, receive, send)
                return
            if not message.get("more_body", False):
                break
        replay: list[Message] = [{"type": "http.request", "body": b"".join(chunks), "more_body": False}]

        async def replayed() -> Message:
            return replay.pop() if replay else await receive()

        await self.app(scope, replayed, send)


class RejectNUL:
    """A NUL (``%00``) in a path or query is never meaningful and PostgreSQL cannot store it: 400.

    Native API only: each dialect answers NUL in its vendor's own terms (404, 401, 422 …)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and not scope["path"].startswith("/dialects/")
            and (b"%00" in scope.get("raw_path", b"") or b"%00" in scope.get("query_string", b""))
        ):
            from callgate.api.problems import render

            error = BadRequest("the URL contains a NUL character (%00)")
            await render(Request(scope), error)(scope, receive, send)
            return
        await self.app(scope, receive, send)


class RequestLog:
    """One log line and metrics per request; never logs query strings (they carry call tokens)."""

    def __init__(self, app: ASGIApp, *, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = secrets.token_hex(8)
        token = request_id_var.set(rid)
        start = time.perf_counter()
        status = 500

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", []).append((b"x-request-id", rid.encode()))
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            elapsed = time.perf_counter() - start
            route = scope.get("route")
            template = getattr(route, "path", "unmatched")
            self.metrics.http_requests.labels(scope["method"], template, str(status)).inc()
            self.metrics.http_latency.labels(template).observe(elapsed)
            if status >= 500 or log.isEnabledFor(logging.DEBUG):
                log.log(
                    logging.ERROR if status >= 500 else logging.DEBUG,
                    "%s %s %d %.1fms",
                    scope["method"],
                    scope["path"],
                    status,
                    elapsed * 1000,
                )
            request_id_var.reset(token)


class NodeHeader:
    """``X-Callgate-Node: <node id>`` on every HTTP response and WebSocket handshake: behind a load
    balancer, which node answered (the id in node leases and ``call.node_id``; new at every start)."""

    def __init__(self, app: ASGIApp, *, node_id: str) -> None:
        self.app = app
        self.header = (b"x-callgate-node", node_id.encode("ascii"))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return

        async def tagged(message: Message) -> None:
            # http.response.start, websocket.accept and a refused handshake's websocket.http.response.start
            if message["type"] in (
                "http.response.start",
                "websocket.accept",
                "websocket.http.response.start",
            ):
                message["headers"] = [*message.get("headers", []), self.header]
            await send(message)

        await self.app(scope, receive, tagged)


class BrowserCORS:
    """CORS for the routes browsers call with publishable keys.

    A preflight carries no key, so it is answered for any origin that some active publishable key
    allows (``allowed_origins``); the real request is then checked against that key's own list.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        paths: Callable[[str], bool],
        origin_allowed: Callable[[str], Awaitable[bool]],
    ) -> None:
        self.app = app
        self.paths = paths
        self.origin_allowed = origin_allowed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.paths(scope["path"]):
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        origin = headers.get(b"origin", b"").decode("latin-1")
        allowed = bool(origin) and await self.origin_allowed(origin)
        if scope["method"] == "OPTIONS" and b"access-control-request-method" in headers:
            status = 204 if allowed else 403
            out = [(b"vary", b"Origin"), (b"content-length", b"0")]
            if allowed:
                out += [
                    (b"access-control-allow-origin", origin.encode("latin-1")),
                    (b"access-control-allow-methods", b"GET, POST, PATCH, OPTIONS"),
                    (
                        b"access-control-allow-headers",
                        b"authorization, content-type, x-api-access-key, voicehub-agent-id",
                    ),
                    (b"access-control-max-age", b"600"),
                ]
            await send({"type": "http.response.start", "status": status, "headers": out})
            await send({"type": "http.response.body", "body": b""})
            return

        async def add_cors(message: Message) -> None:
            if message["type"] == "http.response.start" and allowed:
                message.setdefault("headers", []).extend(
                    [(b"access-control-allow-origin", origin.encode("latin-1")), (b"vary", b"Origin")]
                )
            await send(message)

        await self.app(scope, receive, add_cors)


class PublicAssets:
    """Static browser assets other sites load: the widget, and the SDK it imports.

    ``import()`` of a module and ``audioWorklet.addModule`` from another origin are CORS requests, so
    these files carry ``Access-Control-Allow-Origin: *`` (they are public and sent without credentials)
    and ``Cross-Origin-Resource-Policy: cross-origin`` (for pages that isolate themselves with COEP).
    """

    def __init__(self, app: ASGIApp, *, paths: Callable[[str], bool]) -> None:
        self.app = app
        self.paths = paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.paths(scope["path"]):
            await self.app(scope, receive, send)
            return

        async def add_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", []).extend(
                    [
                        (b"access-control-allow-origin", b"*"),
                        (b"cross-origin-resource-policy", b"cross-origin"),
                    ]
                )
            await send(message)

        await self.app(scope, receive, add_headers)
