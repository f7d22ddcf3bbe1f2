"""The WebSocket transport: RTVI JSON text frames plus raw PCM16 binary frames.

Flow of one connection: accept → redeem the call token (close 44xx on failure) → join the call
(created → connecting) → wait for ``client-ready`` → ``bot-ready`` → the session runs while this module
pumps frames from the socket into it. See ``docs/realtime-protocol.md`` for the protocol and close codes.

Two framings of the same messages: callgate's own (RTVI JSON in text frames, raw PCM16 in binary frames)
and, with ``?format=protobuf``, pipecat's (every message a binary ``pipecat.Frame``: RTVI JSON in a
``MessageFrame``, audio in an ``AudioRawFrame``; see :mod:`.protobuf`). The session never sees which.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Protocol

from callgate.realtime import rtvi
from callgate.realtime.websocket import protobuf

log = logging.getLogger(__name__)

MAX_AUDIO_FRAME_BYTES = 64_000
"""Two seconds of 16 kHz PCM16; clients send 20 ms (640 bytes)."""
HANDSHAKE_TIMEOUT_S = 10.0
OUTPUT_RATES = (8000, 16000, 24000, 48000)
FORMATS = ("json", "protobuf")
PROTOBUF_OUTPUT_RATE = 24000
"""pipecat's WebSocketTransport plays agent audio at 24 kHz unless told otherwise (``playerSampleRate``)."""
INPUT_RATE = 16000


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
    """Sends for the session; receives for :func:`pump`. Sends after close are dropped.

    ``format="protobuf"`` frames everything as pipecat's protobuf ``Frame``; :attr:`output_rate` is the
    rate stamped on outgoing audio frames (set once the handshake chose it).
    """

    def __init__(self, ws: SocketLike, *, format: str = "json") -> None:
        if format not in FORMATS:
            raise ValueError(f"format must be one of {FORMATS}")
        self._ws = ws
        self._closed = False
        self._send_lock = asyncio.Lock()
        self.protobuf = format == "protobuf"
        self.output_rate = INPUT_RATE

    @property
    def closed(self) -> bool:
        return self._closed

    async def send_audio(self, pcm16: bytes) -> None:
        await self._send(protobuf.audio(pcm16, self.output_rate) if self.protobuf else pcm16)

    async def send_message(self, text: str) -> None:
        await self._send(protobuf.message(text) if self.protobuf else text)

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
        """Next caller audio (bytes) or RTVI message (str); raises :class:`Disconnected` when the peer
        closes, ``rtvi.ProtocolError`` for a frame we cannot accept."""
        while True:
            message = await self._ws.receive()
            if message["type"] == "websocket.disconnect":
                self._closed = True
                raise Disconnected(int(message.get("code") or 1005))
            data: bytes | None = message.get("bytes")
            if not self.protobuf:
                if data is not None:
                    if len(data) > MAX_AUDIO_FRAME_BYTES:
                        raise rtvi.ProtocolError("audio frame too large")
                    return data
                text: str = message.get("text") or ""
                return text
            if data is None:
                raise rtvi.ProtocolError("format=protobuf: send pipecat Frames as binary messages")
            unwrapped = _unwrap(data)
            if unwrapped is not None:
                return unwrapped


def _unwrap(data: bytes) -> bytes | str | None:
    """The audio or RTVI message in one pipecat ``Frame``; ``None`` for frames a caller has no business
    sending (``TextFrame``, ``TranscriptionFrame``), which are ignored."""
    try:
        frame = protobuf.decode(data)
    except protobuf.FrameError as exc:
        raise rtvi.ProtocolError(f"not a pipecat protobuf frame: {exc}") from exc
    match frame:
        case protobuf.MessageFrame(data=text):
            return text
        case protobuf.AudioRawFrame(audio=pcm, sample_rate=rate, num_channels=channels):
            if rate not in (0, INPUT_RATE) or channels not in (0, 1):
                raise rtvi.ProtocolError(f"audio must be 16 kHz mono (got {rate} Hz, {channels} channels)")
            if len(pcm) > MAX_AUDIO_FRAME_BYTES:
                raise rtvi.ProtocolError("audio frame too large")
            return pcm
        case _:
            return None


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


def output_rate(msg: rtvi.ClientMessage, *, default: int = 16000) -> int:
    """The agent audio rate ``client-ready`` asks for, else ``default``."""
    audio = msg.data.get("audio") or {}
    rate = audio.get("output_sample_rate", default) if isinstance(audio, dict) else default
    if rate not in OUTPUT_RATES:
        raise rtvi.ProtocolError(f"output_sample_rate must be one of {OUTPUT_RATES}")
    return int(rate)
