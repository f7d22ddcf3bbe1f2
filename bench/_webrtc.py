"""aiortc callers for the real-time benchmarks (the WebRTC transport).

Built on the test suite's caller, ``tests/realtime/webrtc_client.py`` (:class:`RTCClient`: the SDP offer
POSTed to the call's ``webrtc_offer_url`` with its token, RTVI on the ``rtvi`` data channel,
``client-ready`` -> ``bot-ready``). What a benchmark changes:

* **The microphone** is a :class:`PacedTrack`. aiortc's RTP sender calls ``recv()`` in a loop and sends
  what it returns at once, so ``recv`` waits for the next slot of an absolute 20 ms clock (no drift) and
  records how late it woke. :class:`PcmTrack` hands over PCM that aiortc encodes to Opus (in its thread
  pool, as a browser encodes its microphone). A load generator of hundreds of peers uses
  :class:`RtpMic` instead: pre-encoded Opus packets sent as SRTP straight onto the peer's ICE pair by the
  caller's own ticker, with aiortc's sender parked on a :class:`HeldTrack` (aiortc's RTP sender, a task
  and several objects per packet, cost the client more than the server spent on the call).
* **Agent audio is taken where its RTP packets arrive** (:func:`tap_rtp`), before aiortc's receive
  jitter buffer, which holds 4 packets (80 ms) before it decodes anything. The WebSocket client has no
  playout buffer either, so both transports are measured at arrival. :class:`OpusLevel` decodes a packet
  (libopus) where its level is needed.
* **ICE**: a host candidate on 127.0.0.1 (aioice leaves loopback out: :func:`use_loopback`), and the
  ICE servers the create-call answer hands out (none by default) instead of aiortc's default public STUN
  server, which a benchmark must not depend on.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import random
import struct
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection
from aiortc.codecs import get_decoder
from aiortc.codecs.opus import OpusEncoder
from aiortc.jitterbuffer import JitterFrame
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtcrtpreceiver import RTCRtpReceiver
from aiortc.rtp import RtpPacket

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root, for tests.support

from tests.support.webrtc_client import RTCClient, loopback_ice

SAMPLE_RATE = 16000
FRAME_SAMPLES = 320  # 20 ms at 16 kHz
OPUS_RATE = 48000
OPUS_FRAME = 960  # 20 ms at 48 kHz
OPUS = RTCRtpCodecParameters(mimeType="audio/opus", clockRate=OPUS_RATE, channels=2)


def use_loopback() -> None:
    """Make this process's peers gather a host candidate on 127.0.0.1. The server subprocess is not
    patched: it offers its non-loopback addresses, which a 127.0.0.1 socket reaches through ``lo``."""
    loopback_ice(pytest.MonkeyPatch())


# ---------------------------------------------------------------------------------------------- sending


class PacedTrack(MediaStreamTrack):
    """An audio track on an absolute 20 ms clock: ``recv`` returns frame ``n`` at ``start + n * 20 ms``.
    While :attr:`lateness` is a list, each wake-up's lateness (seconds) is appended to it."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self.lateness: list[float] | None = []
        self.sent = 0
        self._start: float | None = None

    async def _slot(self) -> float:
        """Wait for the next slot; return its due time."""
        if self.readyState != "live":
            raise MediaStreamError
        now = time.monotonic()
        if self._start is None:
            self._start = now
        due = self._start + self.sent * 0.02
        if due > now:
            await asyncio.sleep(due - now)
        if self.lateness is not None:
            self.lateness.append(time.monotonic() - due)
        return due


class PcmTrack(PacedTrack):
    """Each slot's 20 ms of 16 kHz PCM16 comes from ``source(due)``; aiortc encodes it to Opus.

    The track hands aiortc 48 kHz frames, as a browser's microphone is captured: aiortc's encoder
    resamples anything else through a FIFO of 960-sample frames that holds each 20 ms back until the
    next one arrives (its resampler's filter delay leaves the FIFO short of a frame), which put 20 ms of
    the load generator's own into every WebRTC figure. Here each frame is upsampled on its own, by
    linear interpolation from the last sample of the frame before (no look-ahead: the audio of slot
    ``n`` is in packet ``n``); the images above 8 kHz this leaves are gone once the server decodes the
    caller's Opus at 16 kHz."""

    def __init__(self, source: Callable[[float], bytes]) -> None:
        super().__init__()
        self._source = source
        self._last = 0.0
        self._at = (np.arange(OPUS_FRAME) - 2) / 3  # output sample j sits at input (j - 2) / 3
        self._grid = np.arange(-1, FRAME_SAMPLES)

    def _upsampled(self, pcm16: bytes) -> bytes:
        x = np.frombuffer(pcm16, "<i2").astype(np.float32)
        y = np.interp(self._at, self._grid, np.concatenate(([self._last], x)))
        self._last = float(x[-1])
        return np.round(y).astype("<i2").tobytes()

    async def recv(self) -> av.AudioFrame:
        due = await self._slot()
        frame = av.AudioFrame(format="s16", layout="mono", samples=OPUS_FRAME)
        frame.planes[0].update(self._upsampled(self._source(due)))
        frame.pts, frame.sample_rate = self.sent * OPUS_FRAME, OPUS_RATE
        frame.time_base = fractions.Fraction(1, OPUS_RATE)
        self.sent += 1
        return frame


class HeldTrack(MediaStreamTrack):
    """An audio track whose ``recv`` returns nothing until the track stops: it parks aiortc's RTP sender
    (which then sends no RTP, only its RTCP reports) while an :class:`RtpMic` sends the microphone."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self._stopped = asyncio.Event()

    def stop(self) -> None:
        super().stop()
        self._stopped.set()

    async def recv(self) -> av.Packet:
        await self._stopped.wait()
        raise MediaStreamError


_RTP_HEADER = struct.Struct("!BBHII")


class RtpMic:
    """Pre-encoded Opus packets (see :func:`opus_packets`), one per :meth:`send`, in a loop, sent as SRTP
    on a connected peer's nominated ICE pair: an RTP header packed by hand, libsrtp's protect, one
    ``sendto``. The peer's audio sender must hold a :class:`HeldTrack`; call :meth:`attach` once it is
    connected, then :meth:`send` every 20 ms."""

    def __init__(self, packets: Sequence[bytes], *, offset: int = 0) -> None:
        self._packets = packets
        self._offset = offset
        self.sent = 0
        self._send: Callable[[bytes], None] | None = None

    def attach(self, pc: RTCPeerConnection) -> None:
        transceiver = next(t for t in pc.getTransceivers() if t.kind == "audio")
        sender = transceiver.sender
        dtls = sender.transport
        pair = dtls.transport._connection._nominated[1]
        transport, addr, srtp = pair.protocol.transport, pair.remote_addr, dtls._tx_srtp
        self._ssrc = sender._ssrc
        self._pt = next(c.payloadType for c in transceiver._codecs if c.name.lower() == "opus")
        self._seq = random.randrange(32768)  # as aiortc: far from wrapping, which SRTP mishandles early
        self._ts = random.getrandbits(32)
        self._send = lambda packet: transport.sendto(srtp.protect(packet), addr)

    @property
    def attached(self) -> bool:
        return self._send is not None

    def send(self) -> None:
        assert self._send is not None
        marker = 0x80 if self.sent == 0 else 0  # the first packet starts a talkspurt
        header = _RTP_HEADER.pack(0x80, marker | self._pt, self._seq, self._ts, self._ssrc)
        self._send(header + self._packets[(self._offset + self.sent) % len(self._packets)])
        self._seq = (self._seq + 1) & 0xFFFF
        self._ts = (self._ts + OPUS_FRAME) & 0xFFFFFFFF
        self.sent += 1


def opus_packets(pcm16: bytes) -> list[bytes]:
    """16 kHz mono PCM16 as 20 ms Opus packets, encoded the way aiortc encodes a track (48 kHz stereo,
    96 kb/s, ``voip``)."""
    encoder = OpusEncoder()
    out: list[bytes] = []
    step = FRAME_SAMPLES * 2
    for n, i in enumerate(range(0, len(pcm16) - step + 1, step)):
        frame = av.AudioFrame(format="s16", layout="mono", samples=FRAME_SAMPLES)
        frame.planes[0].update(pcm16[i : i + step])
        frame.pts, frame.sample_rate = n * FRAME_SAMPLES, SAMPLE_RATE
        frame.time_base = fractions.Fraction(1, SAMPLE_RATE)
        payloads, _ = encoder.encode(frame)
        out.extend(payloads)
    return out


# ---------------------------------------------------------------------------------------------- receiving

RtpTap = Callable[[float, RtpPacket], None]


def tap_rtp(receiver: RTCRtpReceiver, on_packet: RtpTap, *, then_aiortc: bool) -> None:
    """Call ``on_packet(arrival, packet)`` for every RTP packet ``receiver`` gets, before aiortc's jitter
    buffer; with ``then_aiortc`` the packet goes on to aiortc's own path (jitter buffer, decoder thread,
    the remote track) too, else it stops here (no decoding: the load generator)."""
    original = receiver._handle_rtp_packet

    async def handle(packet: RtpPacket, arrival_time_ms: int) -> None:
        on_packet(time.monotonic(), packet)
        if then_aiortc:
            await original(packet, arrival_time_ms)

    receiver._handle_rtp_packet = handle  # type: ignore[method-assign]


class OpusLevel:
    """Decodes the packets of one Opus stream (libopus, as aiortc does) and returns each one's peak."""

    def __init__(self) -> None:
        self._decoder = get_decoder(OPUS)

    def peak(self, packet: RtpPacket) -> int:
        peak = 0
        with contextlib.suppress(av.FFmpegError):
            for frame in self._decoder.decode(JitterFrame(packet.payload, packet.timestamp)):
                samples = np.frombuffer(bytes(frame.planes[0]), dtype="<i2")
                if samples.size:
                    peak = max(peak, int(np.abs(samples.astype(np.int32)).max()))
        return peak


# ---------------------------------------------------------------------------------------------- the peer


class Peer(RTCClient):
    """:class:`RTCClient` with a benchmark microphone and an RTP tap.

    ``await peer.join()`` does the SDP offer/answer, waits for the data channel, sends ``client-ready``
    and waits for ``bot-ready`` (:meth:`RTCClient.__aenter__`). Messages also go to ``on_message(t, msg)``,
    connection-state changes to ``on_state(state)``. With ``aiortc_audio`` the agent's audio also goes
    through aiortc's receive path (jitter buffer, decoder) into ``self.got.audio``, timestamped when it
    comes out.
    """

    def __init__(
        self,
        offer_url: str,
        token: str,
        *,
        track: MediaStreamTrack,
        on_rtp: RtpTap,
        on_message: Callable[[float, dict[str, Any]], None] | None = None,
        on_state: Callable[[str], None] | None = None,
        ice_servers: Sequence[dict[str, Any]] = (),
        mode: str | None = None,
        aiortc_audio: bool = False,
    ) -> None:
        super().__init__(offer_url, token, mode=mode)
        # RTCClient's own peer connection (never started) uses aiortc's default public STUN server.
        servers = [
            RTCIceServer(urls=s["urls"], username=s.get("username"), credential=s.get("credential"))
            for s in ice_servers
        ]
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=servers))
        self.channel = self.pc.createDataChannel("rtvi")
        self.track = track  # type: ignore[assignment]  # ours replaces RTCClient's CallerTrack
        self._on_rtp = on_rtp
        self._forward = on_message
        self._aiortc_audio = aiortc_audio
        if on_state is not None:
            self.pc.on("connectionstatechange", lambda: on_state(self.pc.connectionState))

    async def join(self) -> Peer:
        try:
            await self.__aenter__()
        except BaseException:
            await self.close()
            raise
        return self

    @property
    def closed(self) -> bool:
        return self.pc.connectionState in ("closed", "failed")

    def _on_message(self, raw: str | bytes) -> None:
        super()._on_message(raw)
        if isinstance(raw, str) and self._forward is not None:
            t, msg = self.got.messages[-1]
            self._forward(t, msg)

    def _on_track(self, track: MediaStreamTrack) -> None:
        receiver = next(r for r in self.pc.getReceivers() if r.track is track)
        tap_rtp(receiver, self._on_rtp, then_aiortc=self._aiortc_audio)
        if self._aiortc_audio:
            super()._on_track(track)
