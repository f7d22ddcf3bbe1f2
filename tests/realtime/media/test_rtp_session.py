"""RtpSession over real UDP sockets on loopback, against an RTP peer written here."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import numpy as np
import pytest
from aiortc.rtp import RtcpSrPacket

from callgate.realtime.media import g711
from callgate.realtime.media.rtp import RtpPacket, parse_rtcp, parse_rtp
from callgate.realtime.media.rtp_session import RtpCodec, RtpSession, bind_pair
from callgate.realtime.media.telephone_events import DtmfEvent, event_payloads, parse_event
from tests.support.services import worker_port_offset

PORTS = (31000 + worker_port_offset(), 31999 + worker_port_offset())
CODEC = RtpCodec(0, "PCMU", dtmf_payload_type=101)


@dataclass
class Peer(asyncio.DatagramProtocol):
    """A far end: sends what the test says, keeps what arrives."""

    received: list[tuple[bytes, tuple[str, int]]] = field(default_factory=list)
    transport: asyncio.DatagramTransport | None = None
    seq: int = 100
    ts: int = 5000

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.received.append((data, addr))

    @property
    def address(self) -> tuple[str, int]:
        assert self.transport is not None
        host, port = self.transport.get_extra_info("sockname")[:2]
        return str(host), int(port)

    def send(self, data: bytes, to: tuple[str, int]) -> None:
        assert self.transport is not None
        self.transport.sendto(data, to)

    def send_rtp(self, to: tuple[str, int], payload: bytes, *, pt: int = 0, ts: int | None = None) -> None:
        packet = RtpPacket(pt, 0, self.seq % 65536, self.ts if ts is None else ts, 0xABCDEF, payload)
        self.send(packet.serialize(), to)
        self.seq += 1
        if ts is None:
            self.ts += 160

    def audio(self) -> list[RtpPacket]:
        return [p for d, _ in self.received if (p := parse_rtp(d)) is not None]


async def open_peer(host: str = "127.0.0.1") -> Peer:
    loop = asyncio.get_running_loop()
    _, peer = await loop.create_datagram_endpoint(Peer, local_addr=(host, 0))
    return peer


@dataclass
class Rig:
    session: RtpSession
    peer: Peer
    frames: list[bytes]
    digits: list[DtmfEvent]
    timeouts: list[bool]

    @property
    def to(self) -> tuple[str, int]:
        return ("127.0.0.1", self.session.local_port)


@contextlib.asynccontextmanager
async def rig(**options: object) -> AsyncIterator[Rig]:
    frames: list[bytes] = []
    digits: list[DtmfEvent] = []
    timeouts: list[bool] = []
    session = RtpSession(
        CODEC,
        on_audio=frames.append,
        on_dtmf=digits.append,
        on_timeout=lambda: timeouts.append(True),
        **options,  # type: ignore[arg-type]
    )
    await session.open(host="127.0.0.1", ports=PORTS)
    peer = await open_peer()
    session.start(peer.address)
    try:
        yield Rig(session, peer, frames, digits, timeouts)
    finally:
        await session.close()
        assert peer.transport is not None
        peer.transport.close()


def tone(ms: int, rate: int, freq: float = 440.0) -> bytes:
    t = np.arange(rate * ms // 1000) / rate
    return (np.sin(2 * np.pi * freq * t) * 10000).astype("<i2").tobytes()


def dominant_hz(pcm16: bytes, rate: int) -> float:
    samples = np.frombuffer(pcm16, dtype="<i2").astype(float)
    spectrum = np.abs(np.fft.rfft(samples))
    return float(np.argmax(spectrum) * rate / len(samples))


async def until(condition: object, timeout: float = 3.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():  # type: ignore[operator]
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.01)


async def test_caller_audio_comes_out_as_16k_frames_in_order_despite_reordering() -> None:
    async with rig() as r:
        speech = g711.encode(tone(1000, 8000), "PCMU")
        packets = [speech[i : i + 160] for i in range(0, len(speech), 160)]
        order = list(range(50))
        order[10], order[11] = order[11], order[10]  # one swapped pair
        base_seq, base_ts = r.peer.seq, r.peer.ts
        for i in order:
            r.peer.seq, r.peer.ts = base_seq + i, base_ts + 160 * i
            r.peer.send_rtp(r.to, packets[i])
        await until(lambda: len(r.frames) >= 49)
        assert {len(f) for f in r.frames} == {640}
        assert 430 < dominant_hz(b"".join(r.frames[5:45]), 16000) < 450
        assert r.session.inbound_stats.lost_packets == 0
        assert r.session.stats.received == 50 and r.session.reception.lost == 0


async def test_agent_audio_is_paced_then_silence_and_flush_stops_it() -> None:
    async with rig() as r:
        loop = asyncio.get_running_loop()
        r.session.send_audio(tone(2000, 8000))
        started = loop.time()
        await until(lambda: len(r.peer.audio()) >= 25)
        assert loop.time() - started > 0.4  # 25 packets of 20 ms cannot arrive in a burst
        r.session.flush()
        await asyncio.sleep(0.2)
        packets = r.peer.audio()
        seqs = [p.sequence_number for p in packets]
        assert all((b - a) % 65536 == 1 for a, b in itertools.pairwise(seqs))
        assert all((b.timestamp - a.timestamp) % 2**32 == 160 for a, b in itertools.pairwise(packets))
        assert packets[0].marker == 1 and all(len(p.payload) == 160 for p in packets)
        heard = g711.decode(b"".join(p.payload for p in packets[:20]), "PCMU")
        assert 430 < dominant_hz(heard, 8000) < 450
        assert packets[-1].payload == g711.SILENCE["PCMU"] * 160  # after flush: silence, still paced
        assert r.session.queued_ms == 0


async def test_symmetric_rtp_latches_and_drops_other_sources() -> None:
    async with rig() as r:
        stranger = await open_peer("127.0.0.2")  # another address: dropped before latching
        stranger.send_rtp(r.to, b"\xff" * 160)
        sdp_peer = r.peer
        nat_side = await open_peer()  # the same host, another port: what NAT does to the SDP's port
        try:
            await until(lambda: r.session.stats.wrong_source == 1)
            nat_side.send_rtp(r.to, b"\x00" * 160)
            await until(lambda: r.session.stats.received == 1)
            assert r.session.remote == nat_side.address
            sdp_peer.send_rtp(r.to, b"\xff" * 160)  # after latching, even the SDP's port is a stranger
            await until(lambda: r.session.stats.wrong_source == 2)
            await until(lambda: len(nat_side.audio()) >= 3)
            assert stranger.audio() == []
        finally:
            for p in (stranger, nat_side):
                assert p.transport is not None
                p.transport.close()


async def test_hostile_datagrams_are_counted_never_raised() -> None:
    async with rig() as r:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as raw:
            raw.sendto(b"", r.to)  # asyncio's sendto drops an empty datagram: send it raw
        r.peer.send(b"\x80\x00\x00", r.to)
        r.peer.send(b"\x80" + bytes(3000), r.to)  # oversized
        r.peer.send(bytes([0xBF]) + bytes(20), r.to)  # padding, extension and 15 CSRCs that are not there
        r.peer.send(b"GET / HTTP/1.1\r\n\r\n", r.to)
        r.peer.send_rtp(r.to, b"")  # empty payload: not decodable
        r.peer.send_rtp(r.to, bytes(1400))  # far too long for 20 ms
        await until(lambda: r.session.stats.malformed == 5)
        r.peer.send_rtp(r.to, b"\xff" * 160)
        await until(lambda: len(r.frames) >= 1)
        assert r.session.inbound_stats.decode_errors == 2


async def test_dtmf_both_ways() -> None:
    async with rig() as r:
        r.peer.send_rtp(r.to, b"\xff" * 160)
        start = r.peer.ts
        for payload in event_payloads("7", duration_ms=100):
            r.peer.send_rtp(r.to, payload, pt=101, ts=start)
        await until(lambda: len(r.digits) == 1)
        assert r.digits[0].digit == "7" and r.digits[0].duration_ms == 100

        r.session.send_dtmf("#", duration_ms=60)
        await until(lambda: sum(p.payload_type == 101 for p in r.peer.audio()) >= 5)
        events = [p for p in r.peer.audio() if p.payload_type == 101]
        assert len({p.timestamp for p in events}) == 1 and events[0].marker == 1
        parsed = [parse_event(p.payload) for p in events]
        assert {e[0] for e in parsed} == {11} and [e[1] for e in parsed][-3:] == [True] * 3
        with pytest.raises(ValueError):
            r.session.send_dtmf("x")


async def test_send_digits_returns_once_every_key_is_out_with_audio_between_keys() -> None:
    async with rig() as r:
        await asyncio.wait_for(r.session.send_digits("11#", duration_ms=60), 3)
        assert r.session.stats.dtmf_sent == 3  # every key's end packets are out when it returns

        def ends() -> list[RtpPacket]:
            return [p for p in r.peer.audio() if p.payload_type == 101 and parse_event(p.payload)[1]]

        await until(lambda: len(ends()) == 9)  # three end packets per key
        packets = r.peer.audio()
        events = [p for p in packets if p.payload_type == 101]
        starts = sorted({p.timestamp for p in events})
        assert len(starts) == 3  # three events, the repeated key too
        codes = [parse_event(next(p for p in events if p.timestamp == t).payload)[0] for t in starts]
        assert codes == [1, 1, 11]
        # Between two keys the stream carries audio (60 ms), one sequence and one SSRC throughout.
        kinds = "".join("e" if p.payload_type == 101 else "a" for p in packets)
        assert "eaaae" in kinds and kinds.count("eae") == 0
        seqs = [p.sequence_number for p in packets]
        assert all((b - a) % 65536 == 1 for a, b in itertools.pairwise(seqs))

    plain = RtpSession(RtpCodec(0, "PCMU"), on_audio=lambda _: None)  # no telephone-event negotiated
    with pytest.raises(ValueError, match="telephone-event"):
        await plain.send_digits("1")


async def test_inactivity_calls_back_once_and_hold_pauses_it() -> None:
    async with rig(inactivity_s=0.3) as r:
        r.session.hold(True)
        await asyncio.sleep(0.6)
        assert r.timeouts == []
        r.session.hold(False)
        r.peer.send_rtp(r.to, b"\xff" * 160)
        await until(lambda: r.timeouts == [True], timeout=2)
        await asyncio.sleep(0.4)
        assert r.timeouts == [True]


async def test_rtcp_sender_reports_reach_the_far_ends_rtcp_port() -> None:
    loop = asyncio.get_running_loop()
    _, rtcp_peer = await loop.create_datagram_endpoint(Peer, local_addr=("127.0.0.1", 0))
    frames: list[bytes] = []
    session = RtpSession(CODEC, on_audio=frames.append, rtcp_interval_s=0.2)
    await session.open(host="127.0.0.1", ports=PORTS)
    rtp_port = rtcp_peer.address[1] - 1  # reports go to the SDP's RTP port + 1
    try:
        session.start(("127.0.0.1", rtp_port))
        await until(lambda: any(parse_rtcp(d) for d, _ in rtcp_peer.received))
        reports = [p for d, _ in rtcp_peer.received for p in parse_rtcp(d) or []]
        assert isinstance(reports[0], RtcpSrPacket) and reports[0].sender_info.packet_count > 0
    finally:
        await session.close()
        assert rtcp_peer.transport is not None
        rtcp_peer.transport.close()


async def test_ports_come_from_the_range_in_pairs() -> None:
    def ignore(data: bytes, addr: tuple[str, int]) -> None:
        pass

    pairs = [await bind_pair("127.0.0.1", (32000, 32003), ignore, ignore) for _ in range(2)]
    try:
        ports = sorted(t.get_extra_info("sockname")[1] for pair in pairs for t in pair)
        assert ports == [32000, 32001, 32002, 32003]
        with pytest.raises(OSError, match="in use"):
            await bind_pair("127.0.0.1", (32000, 32003), ignore, ignore)
    finally:
        for pair in pairs:
            for t in pair:
                t.close()
