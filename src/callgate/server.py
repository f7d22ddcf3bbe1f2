"""The uvicorn server ``callgate serve`` runs, with the guards uvicorn lacks against slow and hostile clients.

uvicorn (0.54, httptools) times out only *idle kept-alive* connections, between requests: a client that
connects and sends its request headers a line every few seconds holds the connection forever, and
nothing limits how many connections one address holds. :class:`GuardedHttpProtocol` adds

- a **header timeout**: a request's headers must be complete within ``header_timeout_s`` of the
  connection (or, on a kept-alive connection, of the request's first byte), else 408 and close;
- an **idle timeout** while a request body is read: a gap over ``idle_timeout_s`` gets 408 and close;
- a cap on open connections (HTTP and WebSocket alike) **per client address**: the connection over it
  gets 503 and is closed. Behind a reverse proxy every client shares the proxy's address: raise the cap
  or set it to 0 (off) and limit at the proxy.

:class:`GuardedWebSocketProtocol` closes a WebSocket whose text frame is not UTF-8 with 1007 and logs it
once as a warning (uvicorn logs an ERROR with a traceback per frame, a cheap way to flood the logs).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from uvicorn.server import ServerState
from uvicorn.supervisors import Multiprocess

from callgate.config import Settings
from callgate.log import configure_logging

log = logging.getLogger(__name__)

_WARN_EVERY_S = 10.0
_warned: dict[str, float] = {}


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    header_timeout_s: float = 10.0
    idle_timeout_s: float = 30.0
    max_per_client: int = 64
    """0: no cap."""

    @classmethod
    def from_settings(cls, settings: Settings) -> ConnectionLimits:
        return cls(
            header_timeout_s=settings.http_header_timeout_s,
            idle_timeout_s=settings.http_idle_timeout_s,
            max_per_client=settings.max_connections_per_client,
        )


class ServerConfig(uvicorn.Config):
    """``uvicorn.Config`` with callgate's protocols and their :class:`ConnectionLimits`, and callgate's
    logging (``log_level``, ``log_json``) in every process: with ``--workers N`` uvicorn starts each
    worker as a fresh interpreter that only runs :meth:`configure_logging`, so without it the workers'
    own log lines (calls, warnings) would be lost."""

    def __init__(
        self,
        app: Any,
        *,
        limits: ConnectionLimits,
        logging_config: tuple[str, bool] | None = None,
        **kwargs: Any,
    ) -> None:
        self.logging_config = logging_config
        super().__init__(app, http=GuardedHttpProtocol, ws=GuardedWebSocketProtocol, **kwargs)
        self.limits = limits

    def configure_logging(self) -> None:
        super().configure_logging()
        if self.logging_config is not None:
            level, json_lines = self.logging_config
            configure_logging(level=level, json_lines=json_lines)


def run(config: ServerConfig) -> bool:
    """Serve until stopped (what ``uvicorn.run`` does, without reload); False if it never started."""
    server = uvicorn.Server(config)
    if config.workers > 1:
        Multiprocess(config, sockets=[config.bind_socket()]).run()
        return True
    server.run()
    return server.started


def _warn_sometimes(host: str, message: str, *args: object) -> None:
    """At most one warning per address every few seconds: a flood of refusals is not a flood of logs."""
    now = time.monotonic()
    if now - _warned.get(host, -_WARN_EVERY_S) < _WARN_EVERY_S:
        return
    if len(_warned) > 1024:
        _warned.clear()
    _warned[host] = now
    log.warning(message, host, *args)


class GuardedHttpProtocol(HttpToolsProtocol):
    def __init__(
        self,
        config: uvicorn.Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.limits = config.limits if isinstance(config, ServerConfig) else ConnectionLimits()
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        host = self.client[0] if self.client else None
        cap = self.limits.max_per_client
        if cap and host is not None:
            held = sum(1 for c in self.connections if (getattr(c, "client", None) or ("",))[0] == host)
            if held > cap:
                _warn_sometimes(host, "refusing connections from %s: over %d open", cap)
                self._refuse(503, "too many connections from this address")
                return
        self._arm(self.limits.header_timeout_s, "request headers")

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    # ---------------------------------------------------------------- parser callbacks

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._timer is None:  # a kept-alive connection's next request
            self._arm(self.limits.header_timeout_s, "request headers")

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()
        if not self.parser.should_upgrade():
            self._arm(self.limits.idle_timeout_s, "request body")

    def on_body(self, body: bytes) -> None:
        super().on_body(body)
        if self._timer is not None:
            self._arm(self.limits.idle_timeout_s, "request body")

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def handle_websocket_upgrade(self) -> None:
        self._disarm()
        super().handle_websocket_upgrade()

    # ---------------------------------------------------------------- timeouts

    def _arm(self, seconds: float, what: str) -> None:
        self._disarm()
        self._timer = self.loop.call_later(seconds, self._timed_out, seconds, what)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _timed_out(self, seconds: float, what: str) -> None:
        self._timer = None
        if self.transport.is_closing():
            return
        if self.flow is not None and self.flow.read_paused:  # the app is not reading: not the client's fault
            self._arm(seconds, what)
            return
        host = self.client[0] if self.client else "?"
        log.info("closing a connection from %s: %s stalled for %.0f s", host, what, seconds)
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            if cycle.response_started:  # too late for a status: just hang up
                self.transport.close()
                return
            cycle.disconnected = True  # the app's later sends are dropped; its receive() sees the end
            cycle.message_event.set()
        self._refuse(408, f"{what} not received in time")

    def _refuse(self, status: int, text: str) -> None:
        body = text.encode()
        self.transport.write(
            STATUS_LINE[status]
            + b"content-type: text/plain; charset=utf-8\r\nconnection: close\r\n"
            + b"content-length: %d\r\n\r\n" % len(body)
            + body
        )
        self.transport.close()


class GuardedWebSocketProtocol(WebSocketsSansIOProtocol):
    def send_receive_event_to_app(self) -> None:
        if self.curr_msg_data_type == "text" and not self.close_sent:
            try:
                b"".join(self.frames).decode()
            except UnicodeDecodeError:
                self.frames = []
                host = self.client[0] if self.client else "?"
                log.warning("closing a WebSocket from %s: a text frame is not UTF-8 (1007)", host)
                self.conn.send_close(1007, "text frames must be UTF-8")
                self.handle_parser_exception()
                return
        super().send_receive_event_to_app()
