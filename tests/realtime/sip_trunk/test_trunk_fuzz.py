"""Hostile SIP against the live listener (UDP, TCP): never a crash; a good OPTIONS is answered after."""

from __future__ import annotations

import asyncio
import socket

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.live import LiveServer
from tests.support.trunk import trunk_address

GOOD = (
    "{method} sip:+14155550123@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bK{n}\r\n"
    "From: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\nCall-ID: {n}\r\nCSeq: 1 {method}\r\nMax-Forwards: 70\r\n"
    "Content-Length: 0\r\n\r\n"
)
messages = st.one_of(
    st.binary(max_size=2000),
    st.builds(
        lambda method, n, cut, junk: GOOD.format(method=method, n=n).encode()[:cut] + junk,
        st.sampled_from(["INVITE", "OPTIONS", "BYE", "ACK", "CANCEL", "INFO", "REFER", "X"]),
        st.integers(0, 10**9),
        st.integers(0, 400),
        st.binary(max_size=200),
    ),
)


def options_answered(address: tuple[str, int]) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(10)
        sock.bind(("127.0.0.1", 0))
        request = GOOD.format(method="OPTIONS", n=7).replace(
            "127.0.0.1:9", f"127.0.0.1:{sock.getsockname()[1]}"
        )
        sock.sendto(request.encode(), address)
        return sock.recv(65535).startswith(b"SIP/2.0 200")


async def test_fuzzed_sip_over_udp_and_tcp_never_stops_the_listener(live: LiveServer) -> None:
    address = trunk_address(live)
    sent: list[bytes] = []

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(messages)
    def collect(data: bytes) -> None:
        sent.append(data)

    collect()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        for data in sent:
            udp.sendto(data[:60000], address)
    for data in sent[:60]:
        _, writer = await asyncio.open_connection(*address)
        writer.write(data)
        await writer.drain()
        writer.close()
        await writer.wait_closed()
    # An INVITE flood from a disallowed source (127.0.0.2 is no carrier's): answered 403 from the cache.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as stranger:
        stranger.bind(("127.0.0.2", 0))
        for n in range(200):
            stranger.sendto(GOOD.format(method="INVITE", n=n).encode(), address)
    await asyncio.sleep(0.5)
    assert await asyncio.to_thread(options_answered, address)
    assert live.runtime.sip_trunk is not None and live.runtime.sip_trunk.server.dialog_count == 0
