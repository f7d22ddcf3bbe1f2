"""Plain RTP and RTCP (RFC 3550) for SIP trunks: strict parsing, reception statistics, reports.

Packets are aiortc's (:class:`aiortc.rtp.RtpPacket`, the RTCP classes), which parse and build the wire
format; this module adds what a trunk's media socket needs around them: a parser that never raises on
hostile datagrams (it answers ``None``), the receiver statistics of RFC 3550 appendix A.3 and A.8
(extended highest sequence, cumulative and fractional loss, interarrival jitter), and sender/receiver
reports built from them (section 6.4).
"""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass

from aiortc.rtp import (
    AnyRtcpPacket,
    RtcpPacket,
    RtcpReceiverInfo,
    RtcpRrPacket,
    RtcpSenderInfo,
    RtcpSrPacket,
    RtpPacket,
    clamp_packets_lost,
)

__all__ = [
    "MAX_DATAGRAM",
    "ReceptionStats",
    "RtpPacket",
    "SendStats",
    "ntp_now",
    "parse_rtcp",
    "parse_rtp",
    "receiver_report",
    "sender_report",
]

MAX_DATAGRAM = 1500
"""Larger datagrams are dropped unread: a 20 ms G.711 packet is 172 bytes."""
_SEQ_MOD = 1 << 16
_NTP_EPOCH = 2_208_988_800  # 1900-01-01 to 1970-01-01, seconds


def parse_rtp(data: bytes) -> RtpPacket | None:
    """The RTP packet in ``data``; None for anything else (RTCP, truncated, oversized, not version 2)."""
    if not 12 <= len(data) <= MAX_DATAGRAM or data[0] >> 6 != 2 or 192 <= data[1] <= 223:
        return None  # payload types 72-95 with the marker bit are RTCP (RFC 5761)
    try:
        return RtpPacket.parse(data)
    except (ValueError, struct.error, IndexError):
        return None


def parse_rtcp(data: bytes) -> list[AnyRtcpPacket] | None:
    """The RTCP packets of a compound packet; None if it is malformed."""
    if not 8 <= len(data) <= MAX_DATAGRAM or data[0] >> 6 != 2:
        return None
    try:
        return RtcpPacket.parse(data)
    except (ValueError, struct.error, IndexError):
        return None


def ntp_now(wall: float | None = None) -> int:
    """The 64-bit NTP timestamp of ``wall`` (Unix seconds; default now)."""
    wall = time.time() if wall is None else wall
    seconds = int(wall) + _NTP_EPOCH
    return (seconds << 32) | int((wall % 1) * (1 << 32))


@dataclass(slots=True)
class SendStats:
    packets: int = 0
    octets: int = 0
    """Payload octets (RFC 3550 section 6.4.1)."""
    last_timestamp: int = 0


class ReceptionStats:
    """What RFC 3550 appendix A keeps per source, fed with each packet in arrival order."""

    def __init__(self, clock_rate: int) -> None:
        self.clock_rate = clock_rate
        self.ssrc: int | None = None
        self.received = 0
        self._base_seq = 0
        self._max_seq = 0
        self._cycles = 0
        self._jitter = 0.0  # in timestamp units
        self._transit: int | None = None
        self._expected_prior = 0
        self._received_prior = 0
        self._last_sr: int | None = None  # middle 32 bits of the last SR's NTP time
        self._last_sr_at = 0.0

    def update(self, packet: RtpPacket, *, arrival: float) -> None:
        """``arrival``: local monotonic seconds."""
        seq = packet.sequence_number
        if packet.ssrc != self.ssrc:
            self.ssrc, self._base_seq, self._max_seq, self._cycles = packet.ssrc, seq, seq, 0
            self.received, self._expected_prior, self._received_prior = 0, 0, 0
            self._transit, self._jitter = None, 0.0
        delta = (seq - self._max_seq) % _SEQ_MOD
        if 0 < delta < _SEQ_MOD // 2:
            if seq < self._max_seq:
                self._cycles += _SEQ_MOD
            self._max_seq = seq
        self.received += 1
        transit = int(arrival * self.clock_rate) - packet.timestamp
        if self._transit is not None:
            d = abs(transit - self._transit)
            self._jitter += (d - self._jitter) / 16
        self._transit = transit

    def sender_report_received(self, info: RtcpSenderInfo, *, arrival: float) -> None:
        self._last_sr = (info.ntp_timestamp >> 16) & 0xFFFFFFFF
        self._last_sr_at = arrival

    @property
    def extended_max(self) -> int:
        return self._cycles + self._max_seq

    @property
    def expected(self) -> int:
        return self.extended_max - self._base_seq + 1

    @property
    def lost(self) -> int:
        return self.expected - self.received

    @property
    def jitter(self) -> int:
        return int(self._jitter)

    def report_block(self, *, now: float) -> RtcpReceiverInfo | None:
        """The report block for this source (and the start of a new interval); None before a packet."""
        if self.ssrc is None:
            return None
        expected, received = self.expected, self.received
        expected_interval = expected - self._expected_prior
        lost_interval = expected_interval - (received - self._received_prior)
        self._expected_prior, self._received_prior = expected, received
        fraction = (lost_interval << 8) // expected_interval if expected_interval > 0 < lost_interval else 0
        dlsr = int((now - self._last_sr_at) * 65536) if self._last_sr is not None else 0
        return RtcpReceiverInfo(
            ssrc=self.ssrc,
            fraction_lost=min(fraction, 255),
            packets_lost=clamp_packets_lost(self.lost),
            highest_sequence=self.extended_max & 0xFFFFFFFF,
            jitter=self.jitter & 0xFFFFFFFF,
            lsr=self._last_sr or 0,
            dlsr=dlsr & 0xFFFFFFFF,
        )


def sender_report(ssrc: int, sent: SendStats, block: RtcpReceiverInfo | None, *, wall: float) -> bytes:
    info = RtcpSenderInfo(
        ntp_timestamp=ntp_now(wall),
        rtp_timestamp=sent.last_timestamp,
        packet_count=sent.packets & 0xFFFFFFFF,
        octet_count=sent.octets & 0xFFFFFFFF,
    )
    return bytes(RtcpSrPacket(ssrc=ssrc, sender_info=info, reports=[block] if block else []))


def receiver_report(ssrc: int, block: RtcpReceiverInfo | None) -> bytes:
    return bytes(RtcpRrPacket(ssrc=ssrc, reports=[block] if block else []))
