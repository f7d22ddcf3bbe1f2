"""The SIP-over-WebSocket transport (RFC 7118): the socket that carries SIP, and a call's session transport.

:class:`SipSocket` moves SIP messages: one message per WebSocket frame, text or binary in, text out
(SIP is UTF-8 text). Sends are serialised and never raise: a send on a closed socket is dropped, and
the receive loop reports the close.

:class:`SipCallTransport` is what a :class:`~callgate.realtime.session.CallSession` talks to for a call
that arrived over SIP: agent audio goes to the call's WebRTC media (:class:`PeerMedia`, paced there),
and closing the transport ends the dialog with a BYE. A softphone has no data channel, so RTVI messages
have nowhere to go; the one that matters, ``bot-interrupted`` (barge-in), flushes the queued agent
audio so the caller hears the agent stop at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from callgate.realtime.media import InboundStats, PeerMedia

log = logging.getLogger(__name__)

SUBPROTOCOL = "sip"


class SocketLike(Protocol):
    async def receive(self) -> Any: ...

    async def send_text(self, data: str) -> None: ...

    async def close(self, code: int = 1000, reason: str | None = None) -> None: ...


class SocketClosed(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


class SipSocket:
    def __init__(self, ws: SocketLike) -> None:
        self._ws = ws
        self._lock = asyncio.Lock()
        self.closed = False

    async def receive(self) -> bytes:
        """The next frame's bytes; raises :class:`SocketClosed` when the peer closes."""
        message = await self._ws.receive()
        if message["type"] == "websocket.disconnect":
            self.closed = True
            raise SocketClosed(int(message.get("code") or 1005))
        if message.get("bytes") is not None:
            data: bytes = message["bytes"]
            return data
        text: str = message.get("text") or ""
        return text.encode()

    async def send(self, data: bytes) -> None:
        if self.closed:
            return
        try:
            async with self._lock:
                await self._ws.send_text(data.decode())
        except Exception:  # the peer went away mid-send; the receive loop reports it
            self.closed = True

    async def close(self, code: int = 1000, reason: str = "") -> None:
        if not self.closed:
            self.closed = True
            with contextlib.suppress(Exception):
                await self._ws.close(code=code, reason=reason[:120])


class SipCallTransport:
    """The session's transport for one SIP call; ``hang_up(reason)`` sends the BYE."""

    media_transport = "sip_ws"

    def __init__(self, media: PeerMedia, *, hang_up: Callable[[str], Awaitable[None]]) -> None:
        self._media = media
        self._hang_up = hang_up
        self._closed = False

    def caller_media(self) -> InboundStats | None:
        return self._media.inbound_stats

    async def send_audio(self, pcm16: bytes) -> None:
        await self._media.send_audio(pcm16)

    async def send_message(self, text: str) -> None:
        if '"bot-interrupted"' in text:
            with contextlib.suppress(ValueError):
                if json.loads(text).get("type") == "bot-interrupted":
                    self._media.flush()

    async def close(self, code: int, reason: str) -> None:
        if not self._closed:
            self._closed = True
            await self._hang_up(reason)
