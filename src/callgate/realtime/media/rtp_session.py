"""One plain RTP/AVP audio stream with a SIP trunk: G.711 at 8 kHz, 20 ms packets, RFC 4733 DTMF, RTCP.

:class:`RtpSession` is the whole public surface. Caller audio comes out of ``on_audio`` as 16 kHz mono
PCM16 20 ms frames (the pipeline's format), through the reordering jitter buffer shared with WebRTC
(:class:`~callgate.realtime.media.inbound.InboundAudio`); key presses come out of ``on_dtmf``. Agent
audio goes in at 8 kHz (:meth:`RtpSession.send_audio`) and leaves paced, one packet every 20 ms on an
absolute clock, with silence packets while there is nothing to say (carriers and NATs expect a steady
stream); :meth:`RtpSession.flush` drops what is queued (barge-in).

Symmetric RTP: packets are sent to the address the far end's packets come from once the first one has
arrived ("latching"), before that to the address its SDP named. Only the SDP's host may be latched to
unless ``latch_any_address`` (a carrier behind NAT whose SDP names a private address). Datagrams from
another source, and truncated, oversized or non-RTP datagrams, are dropped and counted, never raised.
When no RTP has arrived for ``inactivity_s``, ``on_timeout`` is called once (the far end vanished).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import RtcpByePacket, RtcpSrPacket

from callgate.pipeline.audio import StreamResampler
from callgate.realtime.media import g711
from callgate.realtime.media.inbound import InboundAudio, InboundStats
from callgate.realtime.media.rtp import (
    MAX_DATAGRAM,
    ReceptionStats,
    RtpPacket,
    SendStats,
    parse_rtcp,
    parse_rtp,
    receiver_report,
    sender_report,
)
from callgate.realtime.media.telephone_events import DtmfEvent, TelephoneEvents, event_payloads

__all__ = ["RtpCodec", "RtpSession", "RtpSessionStats", "bind_pair"]

log = logging.getLogger(__name__)

CLOCK_RATE = 8000
PACKET_MS = 20
SAMPLES = CLOCK_RATE * PACKET_MS // 1000
_PACKET_BYTES = SAMPLES * 2
MAX_QUEUED_S = 30.0
DIGIT_GAP_PACKETS = 3
"""Audio packets (60 ms) between two key presses we send: receivers tell repeated keys apart by it."""
Address = tuple[str, int]


@dataclass(frozen=True, slots=True)
class RtpCodec:
    """What SDP negotiated: the audio codec's payload type and law, and telephone-event's (if any)."""

    payload_type: int
    name: Literal["PCMU", "PCMA"]
    dtmf_payload_type: int | None = None


@dataclass(slots=True)
class RtpSessionStats:
    received: int = 0
    sent: int = 0
    malformed: int = 0
    """Datagrams on the RTP port that are not RTP (truncated, wrong version, oversized)."""
    wrong_source: int = 0
    other_payload: int = 0
    dtmf_received: int = 0
    dtmf_sent: int = 0
    rtcp_received: int = 0
    rtcp_sent: int = 0
    rtcp_malformed: int = 0
    late_slots: int = 0
    """Send slots the loop reached too late to keep up (skipped, not bursted)."""
    overflow_bytes: int = 0


class _Socket(asyncio.DatagramProtocol):
    def __init__(self, on_datagram: Callable[[bytes, Address], None]) -> None:
        self._on_datagram = on_datagram

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        self._on_datagram(data, (str(addr[0]), int(addr[1])))

    def error_received(self, exc: Exception) -> None:
        log.debug("RTP socket error: %s", exc)  # e.g. ICMP port unreachable from a far end gone


async def bind_pair(
    host: str,
    ports: tuple[int, int],
    on_rtp: Callable[[bytes, Address], None],
    on_rtcp: Callable[[bytes, Address], None],
) -> tuple[asyncio.DatagramTransport, asyncio.DatagramTransport]:
    """RTP on an even port of ``ports`` (inclusive) and RTCP on the next one; OSError when all are taken."""
    loop = asyncio.get_running_loop()
    low, high = ports[0] + ports[0] % 2, ports[1] - 1
    evens = list(range(low, high + 1, 2))
    if not evens:
        raise OSError(f"no RTP port pair fits in {ports[0]}-{ports[1]}")
    start = random.randrange(len(evens))
    for port in evens[start:] + evens[:start]:
        try:
            rtp, _ = await loop.create_datagram_endpoint(lambda: _Socket(on_rtp), local_addr=(host, port))
        except OSError:
            continue
        try:
            rtcp, _ = await loop.create_datagram_endpoint(
                lambda: _Socket(on_rtcp), local_addr=(host, port + 1)
            )
        except OSError:
            rtp.close()
            continue
        return rtp, rtcp
    raise OSError(f"every RTP port pair in {ports[0]}-{ports[1]} is in use")


class RtpSession:
    def __init__(
        self,
        codec: RtpCodec,
        *,
        on_audio: Callable[[bytes], None],
        on_dtmf: Callable[[DtmfEvent], None] | None = None,
        on_timeout: Callable[[], None] | None = None,
        inactivity_s: float = 30.0,
        rtcp_interval_s: float = 5.0,
        latch_any_address: bool = False,
        name: str = "",
    ) -> None:
        self.codec = codec
        self.stats = RtpSessionStats()
        self.reception = ReceptionStats(CLOCK_RATE)
        self.sent = SendStats()
        self._name = name
        self._on_timeout = on_timeout
        self._inactivity_s = inactivity_s
        self._rtcp_interval_s = rtcp_interval_s
        self._latch_any = latch_any_address
        self._on_audio = on_audio
        self._on_dtmf = on_dtmf
        self._upsampler = StreamResampler(CLOCK_RATE, 16000, quality="QQ")  # QQ: no added delay
        self._use(codec)
        self._rtp: asyncio.DatagramTransport | None = None
        self._rtcp: asyncio.DatagramTransport | None = None
        self._remote: Address | None = None
        self._latched: Address | None = None
        self._rtcp_remote: Address | None = None
        self._ssrc = secrets.randbits(32)
        self._seq = secrets.randbits(16)
        self._ts = secrets.randbits(32)
        self._queue = bytearray()
        self._dtmf: list[tuple[str, int, asyncio.Future[None] | None]] = []
        self._gap = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._last_rx = 0.0
        self._timeout_paused = False
        self._timed_out = False
        self._first_sent = True
        self._primed = False

    def _use(self, codec: RtpCodec) -> None:
        self.codec = codec
        codecs = {
            codec.payload_type: RTCRtpCodecParameters(
                f"audio/{codec.name}", CLOCK_RATE, 1, codec.payload_type
            )
        }
        events = []
        if codec.dtmf_payload_type is not None:
            pt = codec.dtmf_payload_type
            events.append(RTCRtpCodecParameters("audio/telephone-event", CLOCK_RATE, None, pt))
        self._inbound = InboundAudio(codecs=codecs, on_frame=self._on_audio, decode=self._decode)
        self._events = TelephoneEvents(events, self._on_dtmf or (lambda _: None), name=self._name)
        self._silence = g711.SILENCE[codec.name] * SAMPLES

    def negotiated(self, codec: RtpCodec) -> None:
        """Switch to ``codec`` before :meth:`start`: when we offered several, the answer picks one."""
        assert not self._tasks, "negotiated() before start()"
        self._use(codec)

    # --- set-up and tear-down -------------------------------------------------------------------

    async def open(self, *, host: str, ports: tuple[int, int]) -> int:
        """Bind the RTP/RTCP pair; returns the RTP port (to put in the SDP)."""
        self._rtp, self._rtcp = await bind_pair(host, ports, self._on_rtp, self._on_rtcp)
        return self.local_port

    @property
    def local_port(self) -> int:
        assert self._rtp is not None, "open() first"
        return int(self._rtp.get_extra_info("sockname")[1])

    def start(self, remote: Address) -> None:
        """Begin sending to ``remote`` (the SDP's address; symmetric RTP may replace it)."""
        self._remote = remote
        self._rtcp_remote = (remote[0], remote[1] + 1)
        self._last_rx = asyncio.get_running_loop().time()
        if not self._tasks:
            self._tasks = [asyncio.create_task(self._pace()), asyncio.create_task(self._report())]

    def hold(self, held: bool) -> None:
        """While the far end holds the call it may send nothing: the inactivity timer waits."""
        self._timeout_paused = held
        self._last_rx = asyncio.get_running_loop().time()

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        if self._rtcp is not None and self._rtcp_remote is not None:
            bye = bytes(RtcpByePacket(sources=[self._ssrc]))
            self._rtcp.sendto(receiver_report(self._ssrc, None) + bye, self._rtcp_remote)
        for transport in (self._rtp, self._rtcp):
            if transport is not None:
                transport.close()
        self._rtp = self._rtcp = None

    @property
    def inbound_stats(self) -> InboundStats:
        return self._inbound.stats

    @property
    def remote(self) -> Address | None:
        """Where packets go: the latched source, else the SDP's address."""
        return self._latched or self._remote

    # --- sending ---------------------------------------------------------------------------------

    def send_audio(self, pcm16_8k: bytes) -> None:
        """Queue agent audio (8 kHz mono PCM16); it leaves paced at 20 ms per packet."""
        room = int(MAX_QUEUED_S * CLOCK_RATE * 2) - len(self._queue)
        if len(pcm16_8k) > room:
            self.stats.overflow_bytes += len(pcm16_8k) - max(room, 0)
            pcm16_8k = pcm16_8k[: max(room, 0)]
        self._queue.extend(pcm16_8k[: len(pcm16_8k) & ~1])

    def flush(self) -> None:
        """Drop the agent audio not yet sent (barge-in)."""
        self._queue.clear()

    @property
    def queued_ms(self) -> float:
        return len(self._queue) / 2 / CLOCK_RATE * 1000

    def send_dtmf(self, digit: str, *, duration_ms: int = 160) -> None:
        """Send a key press as RFC 4733 events (ValueError for a non-digit or no negotiated type)."""
        self._queue_digits(digit, duration_ms)

    async def send_digits(self, digits: str, *, duration_ms: int = 160) -> None:
        """Send key presses as RFC 4733 events, 60 ms of audio between them; returns once the last
        one's end packets are out. ValueError for a non-digit, or when the far end did not negotiate
        telephone-event; RuntimeError when the media is not running (or stops before they are sent)."""
        self._check_digits(digits)
        if not self._tasks:
            raise RuntimeError("the call's media is not running")
        await self._queue_digits(digits, duration_ms)

    def _check_digits(self, digits: str) -> None:
        if self.codec.dtmf_payload_type is None:
            raise ValueError("the far end did not negotiate telephone-event (RFC 4733)")
        if not digits:
            raise ValueError("no digits to send")
        for digit in digits:
            event_payloads(digit)  # validates

    def _queue_digits(self, digits: str, duration_ms: int) -> asyncio.Future[None]:
        self._check_digits(digits)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        for i, digit in enumerate(digits):
            self._dtmf.append((digit, duration_ms, done if i == len(digits) - 1 else None))
        return done

    async def _pace(self) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        try:
            while True:
                if self._dtmf and not self._gap:
                    digit, duration_ms, done = self._dtmf.pop(0)
                    await self._send_event(digit, duration_ms)
                    self._gap = DIGIT_GAP_PACKETS
                    if done is not None and not done.done():
                        done.set_result(None)
                    next_at = loop.time()
                    continue
                self._send_audio_slot()
                self._gap = max(0, self._gap - 1)
                next_at += PACKET_MS / 1000
                delay = next_at - loop.time()
                if delay < -0.1:  # the loop stalled: skip the lost slots rather than burst them
                    self.stats.late_slots += 1
                    next_at, delay = loop.time(), 0.0
                await asyncio.sleep(max(0.0, delay))
        finally:
            for _, _, done in self._dtmf:
                if done is not None and not done.done():
                    done.set_exception(RuntimeError("the call's media stopped before the keys were sent"))
            self._dtmf.clear()

    def _send_audio_slot(self) -> None:
        if len(self._queue) >= _PACKET_BYTES:
            pcm = bytes(self._queue[:_PACKET_BYTES])
            del self._queue[:_PACKET_BYTES]
            payload = g711.encode(pcm, self.codec.name)
        elif self._queue:
            pcm = bytes(self._queue) + bytes(_PACKET_BYTES - len(self._queue))
            self._queue.clear()
            payload = g711.encode(pcm, self.codec.name)
        else:
            payload = self._silence
        self._send(self.codec.payload_type, payload, self._ts, marker=self._first_sent)
        self._first_sent = False
        self._ts = (self._ts + SAMPLES) % (1 << 32)

    async def _send_event(self, digit: str, duration_ms: int) -> None:
        pt = self.codec.dtmf_payload_type
        assert pt is not None
        start, payloads = self._ts, event_payloads(digit, duration_ms=duration_ms)
        for i, payload in enumerate(payloads):
            self._send(pt, payload, start, marker=i == 0)
            if i < len(payloads) - 3:  # the three end packets go out together
                self._ts = (self._ts + SAMPLES) % (1 << 32)
                await asyncio.sleep(PACKET_MS / 1000)
        self._ts = (self._ts + SAMPLES) % (1 << 32)
        self.stats.dtmf_sent += 1

    def _send(self, payload_type: int, payload: bytes, timestamp: int, *, marker: bool) -> None:
        target = self.remote
        if self._rtp is None or target is None:
            return
        packet = RtpPacket(payload_type, int(marker), self._seq, timestamp, self._ssrc, payload)
        self._rtp.sendto(packet.serialize(), target)
        self._seq = (self._seq + 1) % (1 << 16)
        self.stats.sent += 1
        self.sent.packets += 1
        self.sent.octets += len(payload)
        self.sent.last_timestamp = timestamp

    # --- receiving -------------------------------------------------------------------------------

    def _accept(self, addr: Address, *, rtcp: bool) -> bool:
        if rtcp:
            return self._remote is not None and addr[0] == (self._latched or self._remote)[0]
        if self._latched is not None:
            return addr == self._latched
        if self._remote is None or (addr[0] != self._remote[0] and not self._latch_any):
            return False
        self._latched = addr
        if addr != self._remote:
            log.info(
                "RTP latched to %s:%d (SDP said %s:%d)", *addr, *self._remote, extra={"call": self._name}
            )
        return True

    def _on_rtp(self, data: bytes, addr: Address) -> None:
        packet = parse_rtp(data) if len(data) <= MAX_DATAGRAM else None
        if packet is None:
            self.stats.malformed += 1
            return
        if not self._accept(addr, rtcp=False):
            self.stats.wrong_source += 1
            return
        loop_time = asyncio.get_running_loop().time()
        self._last_rx = loop_time
        self.stats.received += 1
        self.reception.update(packet, arrival=loop_time)
        if self._events.feed(packet):
            self.stats.dtmf_received += 1
            self._inbound.skip(packet)
        elif packet.payload_type == self.codec.payload_type:
            self._inbound.push(packet)
        else:
            self.stats.other_payload += 1  # e.g. comfort noise: its time is a pause in the audio (inbound)
            self._inbound.skip(packet)

    def _decode(self, packet: RtpPacket) -> tuple[bytes, int] | None:
        if not packet.payload or len(packet.payload) > 4 * SAMPLES:
            return None
        pcm8 = g711.decode(packet.payload, self.codec.name)
        pcm16k = self._upsampler.process(pcm8)
        if not self._primed:
            # The resampler holds back a few samples: start with that much silence so that each
            # packet completes a 20 ms frame at once rather than one packet later.
            self._primed = True
            pcm16k = bytes(max(0, 4 * len(pcm8) // 2 - len(pcm16k))) + pcm16k
        return pcm16k, len(packet.payload)

    def _on_rtcp(self, data: bytes, addr: Address) -> None:
        packets = parse_rtcp(data)
        if packets is None:
            self.stats.rtcp_malformed += 1
            return
        if not self._accept(addr, rtcp=True):
            self.stats.wrong_source += 1
            return
        self.stats.rtcp_received += 1
        self._rtcp_remote = addr  # symmetric RTCP too
        now = asyncio.get_running_loop().time()
        for packet in packets:
            if isinstance(packet, RtcpSrPacket) and packet.ssrc == self.reception.ssrc:
                self.reception.sender_report_received(packet.sender_info, arrival=now)

    # --- reports and the inactivity timer --------------------------------------------------------

    async def _report(self) -> None:
        loop = asyncio.get_running_loop()
        next_report = loop.time() + self._rtcp_interval_s * random.uniform(0.5, 1.5)
        while True:
            await asyncio.sleep(min(1.0, self._inactivity_s / 4))
            now = loop.time()
            silent_for = now - self._last_rx
            if not self._timeout_paused and not self._timed_out and silent_for > self._inactivity_s:
                self._timed_out = True
                log.info("no RTP for %.1f s: the far end is gone", silent_for, extra={"call": self._name})
                if self._on_timeout is not None:
                    self._on_timeout()
            if now >= next_report:
                next_report = now + self._rtcp_interval_s * random.uniform(0.5, 1.5)
                self._send_report(now)

    def _send_report(self, now: float) -> None:
        if self._rtcp is None or self._rtcp_remote is None:
            return
        block = self.reception.report_block(now=now)
        if self.sent.packets:
            report = sender_report(self._ssrc, self.sent, block, wall=time.time())
        else:
            report = receiver_report(self._ssrc, block)
        self._rtcp.sendto(report, self._rtcp_remote)
        self.stats.rtcp_sent += 1
