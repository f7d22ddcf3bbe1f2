"""The WebSocket transport: RTVI JSON text frames plus raw PCM16 binary frames.

Flow of one connection: accept → redeem the call token (close 44xx on failure) → join the call
(created → connecting) → wait for ``client-ready`` → ``bot-ready`` → the session runs while this module
pumps frames from the socket into it. See ``docs/realtime-protocol.md`` for the protocol and close codes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Protocol

from callgate.realtime import rtvi

log = logging.getLogger(__name__)

MAX_AUDIO_FRAME_BYTES = 64_000
"""Two seconds of 16 kHz PCM16; clients send 20 ms (640 bytes)."""
HANDSHAKE_TIMEOUT_S = 10.0
OUTPUT_RATES = (8000, 16000, 24000, 48000)


class CloseCode:
    NORMAL = 1000
    TOO_BIG = 1009
    SERVER_ERROR = 1011
    TRY_AGAIN_LATER = 1013
    PROTOCOL = 4400
    INVALID_TOKEN = 4401
    TOKEN_MISMATCH = 4403
    NOT_FOUND = 4404
    TOKEN_REUSED = 4409
    EXPIRED = 4410
    CONCURRENCY = 4429


class SocketLike(Protocol):
    """The part of Starlette's WebSocket this transport uses."""

    async def receive(self) -> Any: ...

    async def send_bytes(self, data: bytes) -> None: ...

    async def send_text(self, data: str) -> None: ...

    async def close(self, code: int = 1000, reason: str | None = None) -> None: ...


class Disconnected(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


class WebSocketTransport:
    """Sends for the session; receives for :func:`pump`. Sends after close are dropped."""

    def __init__(self, ws: SocketLike) -> None:
        self._ws = ws
        self._closed = False
        self._send_lock = asyncio.Lock()

    @property
    def closed(self) -> bool:
        return self._closed

    async def send_audio(self, pcm16: bytes) -> None:
        await self._send(pcm16)

    async def send_message(self, text: str) -> None:
        await self._send(text)

    async def _send(self, payload: bytes | str) -> None:
        if self._closed:
            return
        try:
            async with self._send_lock:
                if isinstance(payload, bytes):
                    await self._ws.send_bytes(payload)
                else:
                    await self._ws.send_text(payload)
        except Exception:  # the peer went away mid-send; the receive loop reports it
            self._closed = True

    async def close(self, code: int, reason: str) -> None:
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(Exception):
            await self._ws.close(code=code, reason=reason[:120])

    async def receive(self) -> bytes | str:
        """Next data frame; raises :class:`Disconnected` when the peer closes."""
        message = await self._ws.receive()
        if message["type"] == "websocket.disconnect":
            self._closed = True
            raise Disconnected(int(message.get("code") or 1005))
        if message.get("bytes") is not None:
            data: bytes = message["bytes"]
            if len(data) > MAX_AUDIO_FRAME_BYTES:
                raise rtvi.ProtocolError("audio frame too large")
            return data
        text: str = message.get("text") or ""
        return text


async def handshake(transport: WebSocketTransport) -> rtvi.ClientMessage:
    """Wait for ``client-ready`` (the first message); raise ProtocolError otherwise."""
    try:
        async with asyncio.timeout(HANDSHAKE_TIMEOUT_S):
            while True:
                frame = await transport.receive()
                if isinstance(frame, bytes):
                    continue  # audio before client-ready is dropped
                msg = rtvi.parse(frame)
                if msg.type != "client-ready":
                    raise rtvi.ProtocolError("the first message must be client-ready")
                return msg
    except TimeoutError as exc:
        raise rtvi.ProtocolError("no client-ready within 10 s") from exc


def output_rate(msg: rtvi.ClientMessage) -> int:
    audio = msg.data.get("audio") or {}
    rate = audio.get("output_sample_rate", 16000) if isinstance(audio, dict) else 16000
    if rate not in OUTPUT_RATES:
        raise rtvi.ProtocolError(f"output_sample_rate must be one of {OUTPUT_RATES}")
    return int(rate)
