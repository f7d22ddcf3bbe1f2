"""The WebRTC transport: audio on the peer connection's Opus track, RTVI on the ``rtvi`` data channel.

Flow of one call: the client POSTs its SDP offer with the call token → the token is redeemed and the
call joined → the answer goes back in the HTTP response → ICE and DTLS connect → the client sends
``client-ready`` on the data channel → ``bot-ready`` → the session runs while this module pumps
messages into it. Caller audio goes straight from :class:`PeerMedia` into the session, and key presses
(RFC 4733 telephone-events) to the call's digit collector. See ``docs/webrtc.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable

from callgate.realtime import rtvi
from callgate.realtime.media import DtmfEvent, InboundStats, MediaState, PeerMedia

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 15.0
"""From the answer to ICE + DTLS connected and the data channel open."""
HANDSHAKE_TIMEOUT_S = 10.0
CLOSE_DRAIN_S = 1.0
MAX_PENDING_MESSAGES = 256

RTVI_CHANNEL = "rtvi"
"""callgate's SDK names its data channel ``rtvi``."""
PIPECAT_CHANNEL = "chat"
"""``@pipecat-ai/small-webrtc-transport`` names it ``chat`` and adds its own housekeeping on it: a
``"ping: <ms>"`` text every second and ``{"type": "signalling", "message": {...}}`` objects (track
status, renegotiation, peer left). Those never reach the session; the server says ``peerLeft`` when it
hangs up, so the client reports the bot disconnected."""
CHANNEL_LABELS = (RTVI_CHANNEL, PIPECAT_CHANNEL)


class Disconnected(Exception):
    """The peer left: ``clean`` if it closed the connection, not if connectivity was lost."""

    def __init__(self, *, clean: bool) -> None:
        super().__init__("clean" if clean else "lost")
        self.clean = clean


class WebRTCTransport:
    """A :class:`~callgate.realtime.session.CallTransport` over one :class:`PeerMedia`.

    Build it first: it owns the callbacks the media object needs. Caller audio is dropped until
    :attr:`on_audio` is set (to the session's ``push_audio``), key presses until :attr:`on_dtmf` is.
    ``bot-interrupted`` flushes the outbound track before the message leaves, so barge-in silences the
    agent within one frame.
    """

    media_transport = "webrtc"

    def __init__(self) -> None:
        self.on_audio: Callable[[bytes], None] | None = None
        self.on_dtmf: Callable[[DtmfEvent], None] | None = None
        self._messages: asyncio.Queue[str | Disconnected] = asyncio.Queue()
        self._closed = False
        self._overflow = False
        self.media: PeerMedia | None = None

    def attach(self, media: PeerMedia) -> None:
        self.media = media

    # ---------------------------------------------------------------- PeerMedia callbacks

    def audio_received(self, pcm16: bytes) -> None:
        if self.on_audio is not None:
            self.on_audio(pcm16)

    def dtmf_received(self, event: DtmfEvent) -> None:
        if self.on_dtmf is not None:
            self.on_dtmf(event)

    @property
    def pipecat(self) -> bool:
        """The peer is a SmallWebRTC client (its data channel is ``chat``)."""
        return self.media is not None and self.media.channel_label == PIPECAT_CHANNEL

    def message_received(self, text: str) -> None:
        if self.pipecat and _pipecat_housekeeping(text):
            return
        if self._messages.qsize() >= MAX_PENDING_MESSAGES:
            self._overflow = True
            return
        self._messages.put_nowait(text)

    def state_changed(self, state: MediaState) -> None:
        if state in (MediaState.CLOSED, MediaState.FAILED):
            self._messages.put_nowait(Disconnected(clean=state is MediaState.CLOSED))

    # ---------------------------------------------------------------- CallTransport

    @property
    def closed(self) -> bool:
        return self._closed

    def caller_media(self) -> InboundStats | None:
        return self.media.inbound_stats if self.media is not None else None

    async def send_audio(self, pcm16: bytes) -> None:
        if not self._closed and self.media is not None:
            await self.media.send_audio(pcm16)

    async def send_message(self, text: str) -> None:
        if self._closed or self.media is None:
            return
        if '"bot-interrupted"' in text and _type_of(text) == "bot-interrupted":
            dropped = self.media.flush()
            log.debug("barge-in: dropped %d queued frames", dropped)
        self.media.send_message(text)

    async def close(self, code: int, reason: str) -> None:
        """Tell the client how the connection ends (WebRTC has no close code), then hang up."""
        if self._closed or self.media is None:
            return
        self._closed = True
        closing = {"type": "connection-closed", "code": code, "reason": reason[:120]}
        self.media.send_message(rtvi.message("server-message", closing))
        if self.pipecat:
            self.media.send_message(json.dumps({"type": "signalling", "message": {"type": "peerLeft"}}))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(CLOSE_DRAIN_S):
                await self.media.drain_messages()
        await self.media.close()

    # ---------------------------------------------------------------- receiving

    async def receive(self) -> str:
        """Next text message from the data channel; raises :class:`Disconnected` when the peer leaves."""
        if self._overflow:
            raise rtvi.ProtocolError("too many messages queued")
        item = await self._messages.get()
        if isinstance(item, Disconnected):
            self._messages.put_nowait(item)  # every later receive() reports it too
            raise item
        return item


def _pipecat_housekeeping(text: str) -> bool:
    """SmallWebRTC's keep-alive pings and signalling messages (see :data:`PIPECAT_CHANNEL`)."""
    if text.startswith("ping: "):
        return True
    if '"signalling"' in text and _type_of(text) == "signalling":
        log.debug("SmallWebRTC signalling: %.200s", text)
        return True
    return False


def _type_of(text: str) -> str | None:
    with contextlib.suppress(ValueError):
        obj = json.loads(text)
        if isinstance(obj, dict) and isinstance(obj.get("type"), str):
            return str(obj["type"])
    return None


async def handshake(transport: WebRTCTransport) -> rtvi.ClientMessage:
    """Wait for ``client-ready`` (the first message); raise ProtocolError otherwise."""
    try:
        async with asyncio.timeout(HANDSHAKE_TIMEOUT_S):
            msg = rtvi.parse(await transport.receive())
    except TimeoutError as exc:
        raise rtvi.ProtocolError("no client-ready within 10 s") from exc
    if msg.type != "client-ready":
        raise rtvi.ProtocolError("the first message must be client-ready")
    return msg
