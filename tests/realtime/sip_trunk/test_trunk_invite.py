"""The SIP trunk listener over real UDP and TCP sockets, with hand-written SIP, on a real database."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from callgate.domain.carriers import InboundRoute, inbound_networks, route_inbound
from callgate.realtime.sip_trunk import sdp
from callgate.realtime.sip_trunk.server import AllowList, InboundInvite, SipTrunkServer
from tests.support.world import World

NUMBER = "+14155550123"
OFFER = (
    "v=0\r\no=pbx 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio 40000 RTP/AVP 9 8 0 101\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n"
)
_branches = itertools.count()


def invite(
    user: str, *, port: int, offer: str = OFFER, branch: str | None = None, transport: str = "UDP"
) -> bytes:
    branch = branch or f"z9hG4bK{next(_branches)}"
    body = offer.encode()
    head = (
        f"INVITE sip:{user}@127.0.0.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/{transport} 10.9.9.9:{port};branch={branch};rport\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:caller@pbx.example>;tag=abc\r\nTo: <sip:{user}@127.0.0.1>\r\n"
        f"Call-ID: {branch}@pbx\r\nCSeq: 1 INVITE\r\nContact: <sip:caller@127.0.0.1:{port}>\r\n"
        f"Content-Type: application/sdp\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def statuses(messages: list[bytes]) -> list[int]:
    return [int(m.split(b" ", 2)[1]) for m in messages]


@dataclass
class Trunk:
    server: SipTrunkServer
    address: tuple[str, int]
    refusals: list[str]


@contextlib.asynccontextmanager
async def trunk(world: World, *, start_call: object = None) -> AsyncIterator[Trunk]:
    team = await world.team("acme")
    carrier = await world.client.post(
        "/v1/carriers",
        json={"kind": "sip", "name": "pbx", "inbound": {"allowed_addresses": ["127.0.0.1/32"]}},
        headers=team.auth(),
    )
    assert carrier.status_code == 201, carrier.text
    r = await world.client.post(
        "/v1/phone-numbers",
        json={"number": NUMBER, "agent_id": team.agent_id, "carrier_id": carrier.json()["id"]},
        headers=team.auth(),
    )
    assert r.status_code == 201, r.text
    db = world.runtime.db

    async def route(number: str, source_ip: str) -> InboundRoute:
        async with db.read() as s:
            return await route_inbound(s, number=number, source_ip=source_ip)

    async def networks() -> list[tuple[str, str]]:
        async with db.read() as s:
            return await inbound_networks(s)

    refusals: list[str] = []
    options = {"start_call": start_call} if start_call is not None else {}
    server = SipTrunkServer(
        route=route,
        allow_list=AllowList(networks),
        refusal=lambda: refusals[0] if refusals else None,
        public_address="203.0.113.5",
        **options,  # type: ignore[arg-type]
    )
    address = await server.start("127.0.0.1", 0)
    try:
        yield Trunk(server, address, refusals)
    finally:
        await server.close()


class UdpPhone(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.received: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.received.put_nowait(data)

    async def until_final(self, timeout: float = 5.0) -> list[bytes]:
        out: list[bytes] = []
        while not out or statuses(out)[-1] < 200:
            out.append(await asyncio.wait_for(self.received.get(), timeout))
        return out


@contextlib.asynccontextmanager
async def udp_phone(
    host: str = "127.0.0.1",
) -> AsyncIterator[tuple[asyncio.DatagramTransport, UdpPhone, int]]:
    loop = asyncio.get_running_loop()
    transport, phone = await loop.create_datagram_endpoint(UdpPhone, local_addr=(host, 0))
    try:
        yield transport, phone, transport.get_extra_info("sockname")[1]
    finally:
        transport.close()


async def test_inbound_invite_without_a_call_handler_is_answered_480(world: World) -> None:
    async with trunk(world) as t, udp_phone() as (sock, phone, port):
        request = invite("14155550123", port=port)  # without the +
        sock.sendto(request, t.address)
        got = await phone.until_final()
        assert statuses(got) == [100, 180, 480]
        # Responses went to the source port (rport), and say where they came from.
        assert f"rport={port}".encode() in got[0] and b"received=127.0.0.1" in got[0]
        assert b"Contact: <sip:callgate@203.0.113.5:" in got[1] and b"tag=" in got[1]
        sock.sendto(request, t.address)  # a retransmission: the final answer again, nothing new
        again = await asyncio.wait_for(phone.received.get(), 2)
        assert statuses([again]) == [480] and t.server.stats.retransmissions == 1
        # The 480 is retransmitted over UDP until the ACK.
        retransmitted = await asyncio.wait_for(phone.received.get(), 2)
        assert statuses([retransmitted]) == [480]


async def test_refusals_403_404_503_488(world: World) -> None:
    async with trunk(world) as t, udp_phone() as (sock, phone, port):
        sock.sendto(invite("+14155559999", port=port), t.address)
        assert statuses(await phone.until_final()) == [100, 404]
        sock.sendto(invite(NUMBER, port=port, offer=OFFER.replace("9 8 0 101", "9 101")), t.address)
        final = await phone.until_final()
        assert statuses(final) == [100, 488] and b"Warning: 304" in final[-1]
        t.refusals.append("node full")
        sock.sendto(invite(NUMBER, port=port), t.address)
        final = await phone.until_final()
        assert statuses(final) == [100, 503] and b"Retry-After: 5" in final[-1]
        async with udp_phone("127.0.0.2") as (stranger, stranger_phone, stranger_port):
            for _ in range(20):  # a flood from a disallowed address: 403s from the cached allow-list
                stranger.sendto(invite(NUMBER, port=stranger_port), t.address)
            finals = [
                s for _ in range(40) if (s := statuses([await stranger_phone.received.get()])[0]) >= 200
            ]
            assert finals == [403] * 20


async def test_tcp_messages_are_framed_and_answered_on_the_connection(world: World) -> None:
    async with trunk(world) as t:
        reader, writer = await asyncio.open_connection(*t.address)
        request = invite(NUMBER, port=5060, transport="TCP")
        writer.write(b"\r\n\r\n" + request[:50])  # keep-alives, then a message in two pieces
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(request[50:])
        seen: list[bytes] = []
        while not seen or statuses(seen)[-1] < 200:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            seen.append(head)
        assert statuses(seen) == [100, 180, 480] and b";transport=tcp>" in seen[1]
        writer.write(b"INVITE sip:x@y SIP/2.0\r\nContent-Length: 99999999\r\n\r\n")  # unframeable: closed
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()


async def test_a_call_handler_answering_gives_a_200_with_sdp(world: World) -> None:
    calls: list[InboundInvite] = []

    async def start_call(call: InboundInvite) -> None:
        calls.append(call)
        call.tx.send(200, body=sdp.answer(call.offer, host=call.media_host, port=12000))

    async with trunk(world, start_call=start_call) as t, udp_phone() as (sock, phone, port):
        sock.sendto(invite(NUMBER, port=port), t.address)
        got = await phone.until_final()
        assert statuses(got) == [100, 180, 200]
        assert b"m=audio 12000 RTP/AVP 8 101" in got[-1] and b"a=rtpmap:8 PCMA/8000" in got[-1]
        assert calls[0].route.number == NUMBER and calls[0].offer.codec.name == "PCMA"
        assert calls[0].offer.port == 40000 and calls[0].route.team_id is not None


async def test_hostile_datagrams_never_stop_the_listener(world: World) -> None:
    async with trunk(world) as t, udp_phone() as (sock, phone, port):
        raw = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            for junk in [
                b"",
                b"\x00" * 5000,
                b"INVITE",
                b"SIP/2.0 200 OK\r\n\r\n",
                invite(NUMBER, port=port)[:-20],
            ]:
                raw.sendto(junk, t.address)
            raw.sendto(b"\xff" * 60000, t.address)
        finally:
            raw.close()
        options = (
            f"OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKo1\r\n"
            "From: <sip:p@x>;tag=1\r\nTo: <sip:callgate@127.0.0.1>\r\nCall-ID: o1\r\nCSeq: 1 OPTIONS\r\n"
            "Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        ).encode()
        sock.sendto(options, t.address)
        got = await phone.until_final()
        assert statuses(got) == [200] and b"Allow: INVITE" in got[0]
        assert t.server.stats.malformed >= 4


@pytest.mark.parametrize(
    ("body", "codec"),
    [
        (OFFER, ("PCMA", 8, 101)),
        ("v=0\r\nc=IN IP4 10.0.0.1\r\nm=audio 4000 RTP/AVP 0\r\n", ("PCMU", 0, None)),
        (
            "v=0\r\nm=audio 4000 RTP/AVP 96\r\nc=IN IP4 10.0.0.1\r\na=rtpmap:96 PCMU/8000\r\n",
            ("PCMU", 96, None),
        ),
    ],
)
def test_sdp_offers(body: str, codec: tuple[str, int, int | None]) -> None:
    offer = sdp.parse_offer(body.encode())
    assert (offer.codec.name, offer.codec.payload_type, offer.codec.dtmf_payload_type) == codec


@pytest.mark.parametrize(
    "body",
    [
        "",
        "m=audio 4000 RTP/AVP 0\r\n",
        "c=IN IP4 1.2.3.4\r\nm=audio 4000 RTP/SAVP 0\r\n",
        "c=IN IP4 x\r\nm=audio 1 RTP/AVP 0",
    ],
)
def test_sdp_without_usable_audio(body: str) -> None:
    with pytest.raises(sdp.NoCommonCodec):
        sdp.parse_offer(body.encode())
