"""RTP/RTCP parsing never raises on hostile datagrams; reception statistics follow RFC 3550 appendix A."""

from __future__ import annotations

from aiortc.rtp import RtcpRrPacket, RtcpSrPacket
from hypothesis import given, settings
from hypothesis import strategies as st

from callgate.realtime.media.rtp import (
    ReceptionStats,
    RtpPacket,
    SendStats,
    parse_rtcp,
    parse_rtp,
    receiver_report,
    sender_report,
)
from callgate.realtime.media.telephone_events import event_payloads, parse_event


def rtp(seq: int, ts: int, *, ssrc: int = 7, pt: int = 0, payload: bytes = b"\xff" * 160) -> RtpPacket:
    return RtpPacket(payload_type=pt, sequence_number=seq, timestamp=ts, ssrc=ssrc, payload=payload)


@settings(max_examples=3000, deadline=None, database=None)
@given(st.binary(max_size=2000))
def test_parsers_answer_none_or_a_packet_never_raise(data: bytes) -> None:
    packet = parse_rtp(data)
    assert packet is None or (len(data) <= 1500 and packet.version == 2)
    parse_rtcp(data)


@settings(max_examples=1000, deadline=None, database=None)
@given(st.binary(min_size=12, max_size=200), st.integers(0, 255), st.integers(0, 0x0F))
def test_rtp_headers_with_hostile_flags_never_raise(data: bytes, second: int, flags: int) -> None:
    forged = bytes([0x80 | 0x20 | 0x10 | flags, second]) + data[2:]  # padding + extension + CSRCs
    parse_rtp(forged)
    parse_rtcp(bytes([0x80 | flags, 200 + second % 5]) + data[2:])


def test_rtp_round_trip_and_refusals() -> None:
    wire = rtp(65535, 1234).serialize()
    packet = parse_rtp(wire)
    assert packet is not None and packet.sequence_number == 65535 and packet.payload == b"\xff" * 160
    assert parse_rtp(wire[:11]) is None
    assert parse_rtp(b"\x40" + wire[1:]) is None  # version 1
    assert parse_rtp(wire + bytes(1500)) is None  # oversized
    sr = sender_report(1, SendStats(3, 480, 99), None, wall=1.0)
    assert parse_rtp(sr) is None  # RTCP on the RTP port is not audio
    parsed = parse_rtcp(sr)
    assert (
        parsed is not None and isinstance(parsed[0], RtcpSrPacket) and parsed[0].sender_info.packet_count == 3
    )


def test_reception_stats_count_loss_wrap_and_jitter() -> None:
    stats = ReceptionStats(8000)
    seqs = [65533, 65534, 65535, 0, 2, 3]  # 1 is lost, across the wrap
    for i, seq in enumerate(seqs):
        stats.update(rtp(seq, (seq - 65533) % 65536 * 160), arrival=i * 0.02 + (0.005 if i == 4 else 0))
    assert stats.expected == 7 and stats.received == 6 and stats.lost == 1
    assert stats.extended_max == 65536 + 3
    assert stats.jitter > 0
    block = stats.report_block(now=1.0)
    assert block is not None and block.packets_lost == 1 and block.fraction_lost == 256 // 7
    assert block.highest_sequence == 65539
    again = stats.report_block(now=2.0)  # a new interval with nothing lost
    assert again is not None and again.fraction_lost == 0
    parsed = parse_rtcp(receiver_report(9, block))
    assert (
        parsed is not None and isinstance(parsed[0], RtcpRrPacket) and parsed[0].reports[0].packets_lost == 1
    )


def test_telephone_event_payloads_follow_rfc_4733() -> None:
    payloads = event_payloads("#", duration_ms=100)
    parsed = [parse_event(p) for p in payloads]
    assert [p[0] for p in parsed] == [11] * len(payloads)
    assert [p[3] for p in parsed] == [160, 320, 480, 640, 800, 800, 800]
    assert [p[1] for p in parsed] == [False] * 4 + [True] * 3
