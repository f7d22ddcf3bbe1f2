"""One WebRTC peer's audio and data channel, as callgate's transports need them."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import enum
import logging
from collections.abc import Callable, Sequence

import aioice.ice
from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription
from aiortc.rtcdatachannel import RTCDataChannel
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtcrtpreceiver import RTCRtpReceiver
from aiortc.rtcrtptransceiver import RTCRtpTransceiver
from aiortc.rtp import RtpPacket
from aiortc.sdp import candidate_from_sdp

from callgate.config import IceServer
from callgate.pipeline.audio import FRAME_MS
from callgate.realtime.media.decoding import shared_worker
from callgate.realtime.media.inbound import InboundAudio, InboundStats
from callgate.realtime.media.offer import AUDIO_CODECS, OfferRejected, audio_codecs, check_offer
from callgate.realtime.media.outbound import OutboundAudioTrack, OutboundStats
from callgate.realtime.media.rtp_hooks import mark_talkspurts, receive_directly
from callgate.realtime.media.telephone_events import DtmfEvent, TelephoneEvents

log = logging.getLogger(__name__)

CLOSE_GRACE_S = 1.0

OUTPUT_RATES = {"opus": 48000, "g722": 16000, "pcmu": 8000, "pcma": 8000}
"""The rate agent audio is best handed over at, per negotiated codec (no resampling before encoding)."""
RTP_CLOCKS = {"opus": 48000, "g722": 8000, "pcmu": 8000, "pcma": 8000}
"""Each codec's RTP clock rate (G.722's is 8000 Hz for historical reasons, RFC 3551)."""


_HOST_ADDRESSES: contextvars.ContextVar[Sequence[str]] = contextvars.ContextVar(
    "callgate_ice_host_addresses", default=()
)
_aioice_host_addresses = aioice.ice.get_host_addresses


def _host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    """aioice asks this (a module function, no option) for the addresses of its host candidates while
    it gathers; a :class:`PeerMedia` with ``host_addresses`` answers for its own connection."""
    chosen = _HOST_ADDRESSES.get()
    return list(chosen) if chosen else _aioice_host_addresses(use_ipv4, use_ipv6)


aioice.ice.get_host_addresses = _host_addresses


class MediaState(enum.Enum):
    NEW = "new"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    CLOSED = "closed"
    """The peer hung up (closed its connection) or :meth:`PeerMedia.close` was called."""
    FAILED = "failed"
    """ICE or DTLS failed, or connectivity was lost (consent expired)."""


class PeerMedia:
    """A WebRTC peer's audio as 16 kHz PCM16 frames, and the agent's audio back, over aiortc.

    The contract, for every transport that carries WebRTC media (callgate's SDK, SIP over WebSocket):

    - ``answer(offer_sdp)`` takes the remote SDP offer and returns the local SDP answer with every ICE
      candidate already gathered (no trickle): host candidates on ``host_addresses`` if given, else on
      every interface but loopback. Audio codecs: Opus, G.722, PCMU, PCMA, in the offer's
      order of preference; RFC 4733 ``telephone-event`` is accepted when offered. Video is declined
      (answered ``inactive``). An offer that cannot be used raises :class:`OfferRejected` (HTTP 400).
    - Caller audio: ``on_audio(pcm16)`` is called with 640-byte frames (20 ms, 16 kHz, mono), in order,
      as packets arrive; reordering is absorbed and lost time is filled with silence (see ``inbound``).
    - Agent audio: ``await send_audio(pcm16)`` at :attr:`output_rate` (chosen for the negotiated codec;
      ``output_rate=`` overrides it), any chunk size, paced by the caller (one 20 ms frame per 20 ms,
      as the session's player does). The track sends one 20 ms frame every 20 ms, each frame in the
      first slot after it arrived; while the agent is silent, Opus sends only a DTX packet every
      400 ms (see ``outbound``), other codecs pre-encoded silence; ``send_audio`` waits while more than two
      seconds are queued. ``flush()`` drops everything queued at once (barge-in).
    - Data channel: the first channel the peer opens with a label in ``channel_labels`` carries text
      messages: ``on_message(text)`` for each one received, ``send_message(text)`` to send (dropped if not
      open); :attr:`channel_label` says which label it was.
    - Trickled ICE: the peer's candidates may also come after the offer, through
      :meth:`add_candidate` (our own are all in the answer).
    - DTMF: ``on_dtmf(DtmfEvent)`` once per key press sent as RFC 4733 telephone-events.
    - ``on_state(MediaState)`` on every state change; CLOSED means the peer closed the connection,
      FAILED that connectivity was lost. ``await close()`` releases everything (idempotent).

    Callbacks run on the event loop and must not block. Every task this object starts is its own and
    ends in :meth:`close`.
    """

    def __init__(
        self,
        *,
        on_audio: Callable[[bytes], None],
        on_message: Callable[[str], None] | None = None,
        on_dtmf: Callable[[DtmfEvent], None] | None = None,
        on_state: Callable[[MediaState], None] | None = None,
        ice_servers: Sequence[IceServer] = (),
        host_addresses: Sequence[str] = (),
        channel_labels: Sequence[str] = ("rtvi",),
        output_rate: int | None = None,
        name: str = "",
    ) -> None:
        self.state = MediaState.NEW
        self.codec = ""
        """The negotiated audio codec's name (``opus``, ``PCMU``...), once answered."""
        self.output_rate = output_rate or 0
        self.offered_channel = False
        """True if the offer asked for a data channel."""
        self._on_audio = on_audio
        self._on_message = on_message
        self._on_dtmf = on_dtmf
        self._on_state = on_state
        self._labels = tuple(channel_labels)
        self.channel_label: str | None = None
        """The label of the data channel in use, once the peer opened one."""
        self._host_addresses = tuple(host_addresses)
        self._name = name
        self._pc = RTCPeerConnection(
            RTCConfiguration(
                iceServers=[
                    RTCIceServer(urls=s.urls, username=s.username, credential=s.credential)
                    for s in ice_servers
                ]
            )
        )
        self._pc.on("connectionstatechange", self._connection_changed)
        self._pc.on("datachannel", self._channel_opened)
        self._channel: RTCDataChannel | None = None
        self._channel_ready = asyncio.Event()
        self._settled = asyncio.Event()  # connected, closed or failed
        self._ended = asyncio.Event()  # closed or failed
        self._track: OutboundAudioTrack | None = None
        self._inbound: InboundAudio | None = None
        self._receiver: RTCRtpReceiver | None = None
        self._receive: Callable[[RtpPacket], None] | None = None

    # ---------------------------------------------------------------- negotiation

    async def answer(self, offer_sdp: str) -> str:
        """Apply the peer's offer; return our answer (ICE candidates gathered)."""
        offer = check_offer(offer_sdp)
        self.offered_channel = offer.has_channel
        self.codec = offer.codec
        self.output_rate = self.output_rate or OUTPUT_RATES[offer.codec.lower()]
        self._track = OutboundAudioTrack(sample_rate=self.output_rate, codec=offer.codec)
        try:
            await self._pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
            (audio,) = [t for t in self._pc.getTransceivers() if t.kind == "audio"]
            sender = self._pc.addTrack(self._track)
            for transceiver in self._pc.getTransceivers():
                if transceiver.kind != "audio":
                    transceiver.direction = "inactive"
            chosen = _HOST_ADDRESSES.set(self._host_addresses)
            try:
                await self._pc.setLocalDescription(await self._pc.createAnswer())  # gathers candidates
            finally:
                _HOST_ADDRESSES.reset(chosen)
        except Exception as exc:  # aiortc raises several kinds on offers it cannot use
            raise OfferRejected(f"the SDP offer cannot be answered: {exc}") from exc
        local = self._pc.localDescription
        self._receive_with_ours(audio, audio_codecs(local.sdp))
        # Both descriptions are set, so the sender's transport is the bundled one it will send on.
        dtls = sender.transport
        step = RTP_CLOCKS[offer.codec.lower()] * FRAME_MS // 1000
        dtls._send_rtp = mark_talkspurts(dtls._send_rtp, ssrc=sender._ssrc, step=step)  # type: ignore[method-assign,assignment]
        self._set_state(MediaState.CONNECTING)
        return local.sdp

    async def add_candidate(
        self, candidate: str, *, sdp_mid: str | None, sdp_mline_index: int | None
    ) -> None:
        """A remote ICE candidate trickled after the offer (``candidate:...`` as in SDP, with or without
        the ``a=`` / ``candidate:`` prefix); an empty one means the peer has no more. Raises
        ``ValueError`` for a candidate that cannot be parsed or placed."""
        text = candidate.strip().removeprefix("a=").removeprefix("candidate:")
        try:
            if not text:
                await self._pc.addIceCandidate(None)
                return
            parsed = candidate_from_sdp(text)
            parsed.sdpMid = sdp_mid
            parsed.sdpMLineIndex = sdp_mline_index
            await self._pc.addIceCandidate(parsed)
        except Exception as exc:  # aiortc/aioice assert, or raise whatever a bad field provokes
            raise ValueError(f"the ICE candidate cannot be used: {exc!r}"[:200]) from exc

    def _receive_with_ours(self, transceiver: RTCRtpTransceiver, codecs: list[RTCRtpCodecParameters]) -> None:
        """Route the stream's RTP packets to our jitter buffer and DTMF receiver, not aiortc's decoder."""
        audio = {
            c.payloadType: c for c in codecs if c.name.lower() in AUDIO_CODECS and c.payloadType is not None
        }
        inbound = self._inbound = InboundAudio(codecs=audio, on_frame=self._on_audio, offload=shared_worker())
        dtmf = TelephoneEvents(codecs, self._on_dtmf or _ignore, name=self._name)

        def receive(packet: RtpPacket) -> None:
            if not dtmf.feed(packet) and packet.payload:
                inbound.push(packet)
            else:
                inbound.skip(packet)  # it still takes its place in the sequence

        async def on_rtp(packet: RtpPacket, arrival_time_ms: int) -> None:
            receive(packet)

        transceiver.receiver._handle_rtp_packet = on_rtp  # type: ignore[method-assign]
        self._receive = receive
        self._receiver = transceiver.receiver

    # ---------------------------------------------------------------- state

    def _set_state(self, state: MediaState) -> None:
        if state is self.state or self.state in (MediaState.CLOSED, MediaState.FAILED):
            return
        log.info("media %s -> %s", self.state.value, state.value, extra={"call": self._name})
        self.state = state
        if state is not MediaState.CONNECTING:
            self._settled.set()
        if state in (MediaState.CLOSED, MediaState.FAILED):
            self._ended.set()
        if self._on_state is not None:
            self._on_state(state)

    def _connection_changed(self) -> None:
        state = self._pc.connectionState
        if state == "connected":
            if self._receiver is not None and self._receive is not None:
                # From now on caller audio skips aiortc's receive queue and tasks (see rtp_hooks).
                receive_directly(self._receiver.transport, self._receiver, self._receive)
            self._set_state(MediaState.CONNECTED)
        elif state == "failed":
            self._set_state(MediaState.FAILED)
        elif state == "closed":
            self._set_state(MediaState.CLOSED)

    def _channel_opened(self, channel: RTCDataChannel) -> None:
        if channel.label not in self._labels or self._channel is not None:
            return  # other channels are not ours to read
        self._channel = channel
        self.channel_label = channel.label
        channel.on("message", self._channel_message)
        channel.on("close", lambda: self._set_state(MediaState.CLOSED))
        self._channel_ready.set()

    def _channel_message(self, message: str | bytes) -> None:
        if isinstance(message, str) and self._on_message is not None:
            self._on_message(message)

    async def wait_connected(self, within_s: float | None = None) -> bool:
        """Wait until media flows (True), or the connection failed or closed, or ``within_s`` passed
        (False)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within_s):
                await self._settled.wait()
        return self.state is MediaState.CONNECTED

    async def wait_channel(self) -> bool:
        """Wait until the peer's data channel is open (True) or the connection ended (False)."""
        ready = asyncio.ensure_future(self._channel_ready.wait())
        ended = asyncio.ensure_future(self._ended.wait())
        try:
            await asyncio.wait((ready, ended), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in (ready, ended):
                waiter.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await waiter
        return self._channel_ready.is_set() and not self._ended.is_set()

    # ---------------------------------------------------------------- media and messages

    async def send_audio(self, pcm16: bytes) -> None:
        if self._track is not None and self.state not in (MediaState.CLOSED, MediaState.FAILED):
            await self._track.put(pcm16)

    def flush(self) -> int:
        """Drop all queued agent audio; returns the number of 20 ms frames dropped."""
        return self._track.flush() if self._track is not None else 0

    def send_message(self, text: str) -> bool:
        channel = self._channel
        if channel is None or channel.readyState != "open":
            return False
        channel.send(text)
        return True

    async def drain_messages(self) -> None:
        """Wait until messages sent so far have left (e.g. before :meth:`close`); bound it with
        ``asyncio.timeout``."""
        channel = self._channel
        if channel is None or channel.readyState != "open" or channel.bufferedAmount == 0:
            return
        drained = asyncio.Event()
        channel.bufferedAmountLowThreshold = 0
        channel.once("bufferedamountlow", drained.set)
        channel.once("close", drained.set)
        await drained.wait()

    async def _end_aiortc_tasks(self) -> None:
        """aiortc starts its connect task without keeping a handle (``ensure_future``); after a close
        before ICE completed it lingers for a few tens of milliseconds. Find ours and see them end."""
        ours = []
        for task in asyncio.all_tasks():
            frame = getattr(task.get_coro(), "cr_frame", None)
            if (
                task is not asyncio.current_task()
                and frame is not None
                and frame.f_locals.get("self") is self._pc
            ):
                ours.append(task)
        if not ours:
            return
        _, pending = await asyncio.wait(ours, timeout=CLOSE_GRACE_S)
        for task in pending:
            task.cancel()
        for task in pending:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    @property
    def inbound_stats(self) -> InboundStats | None:
        return self._inbound.stats if self._inbound else None

    @property
    def outbound_stats(self) -> OutboundStats | None:
        return self._track.stats if self._track else None

    async def close(self) -> None:
        if self._track is not None:
            self._track.stop()
        if self._inbound is not None:
            self._inbound.close()
        await self._pc.close()
        await self._end_aiortc_tasks()
        self._set_state(MediaState.CLOSED)
        self._settled.set()
        self._ended.set()


def _ignore(event: DtmfEvent) -> None:
    """No ``on_dtmf``: key presses are logged (by :class:`TelephoneEvents`) and dropped."""
