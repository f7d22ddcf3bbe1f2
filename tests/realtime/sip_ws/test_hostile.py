"""Hostile and malformed SIP over a real socket: every frame gets its answer (or none), the connection and
the server carry on. The parser alone is fuzzed in ``test_message``; here the whole dispatcher is."""

from __future__ import annotations

import asyncio

import pytest
import sipmessage
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.realtime.sip.test_message import INVITE, REGISTER, mutated
from tests.support.live import LiveServer
from tests.support.sip_client import SipCall, SipClient


def requests_for(call: SipCall) -> list[bytes]:
    """The test messages, addressed to this call's domain and user (so they get past the lookup)."""
    user, domain = call.creds.username, call.creds.domain
    agent = call.target.split(":", 1)[1].split("@", 1)[0]
    return [
        m.replace(b"u0011223344556677", user.encode())
        .replace(b"agent-0011223344556677", agent.encode())
        .replace(b"example.com", domain.encode())
        for m in (REGISTER, INVITE)
    ]


HOSTILE = [
    REGISTER.replace(b"Content-Length: 0", b"Content-Length: 9"),
    REGISTER.replace(b"Content-Length: 0\r\n\r\n", b"Content-Length: 70000\r\n\r\n" + b"v" * 70_000),
    b"\x00\xff" * 100,
    b"INVITE sip:x@y SIP/2.0\r\n\r\n",
    b"SIP/2.0 200 OK\r\n\r\n",
    b"REGISTER sip:x SIP/2.0\r\nVia: SIP/2.0/WS a.invalid;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\n"
    b'To: <sip:a@b>\r\nCall-ID: c\r\nCSeq: 1 REGISTER\r\nAuthorization: Digest username="u0", nc=zz\r\n\r\n',
    b"BYE sip:x@y SIP/2.0\r\nVia: SIP/2.0/WS a.invalid;branch=z9hG4bK2\r\nFrom: <sip:a@b>;tag=1\r\n"
    b"To: <sip:a@b>;tag=nope\r\nCall-ID: c\r\nCSeq: 2 BYE\r\n\r\n",
    b"A" * 70_000,
    "INVITE sip:agent@x SIP/2.0\r\nVia: SIP/2.0/WS \u00e9.invalid;branch=z9hG4bK3\r\n\r\n".encode(),
]


async def healthy(live: LiveServer, client: SipClient, domain: str) -> None:
    ok = await client.request("OPTIONS", f"sip:{domain}", authenticate=False)
    assert ok.code == 200
    assert (await live.world.client.get("/healthz")).status_code == 200


async def test_hostile_frames_get_answers_and_the_connection_survives(
    live: LiveServer, sip_call: SipCall
) -> None:
    async with SipClient(sip_call.ws_url, sip_call.creds) as client:
        assert (await client.register()).code == 200
        seen = len(client.inbox.raw)
        for frame in HOSTILE:
            await client.send_raw(frame)
        await healthy(live, client, sip_call.creds.domain)
        replies = [sipmessage.Message.parse(r) for r in client.inbox.raw[seen:]]
        codes = [r.code for r in replies if isinstance(r, sipmessage.Response)]
        assert {400, 401, 481, 513} <= set(codes) and codes[-1] == 200
        assert client.ws.close_code is None
        assert (await client.register()).code == 200  # the registration still works


@pytest.fixture
def hostile_call(sip_call: SipCall) -> SipCall:
    return sip_call


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(frames=st.lists(mutated(), min_size=1, max_size=4), addressed=st.booleans())
async def test_fuzzed_frames_never_break_the_connection(
    live: LiveServer, hostile_call: SipCall, frames: list[bytes], addressed: bool
) -> None:
    call = hostile_call
    if addressed:
        real = requests_for(call)
        frames = [f.replace(b"u0011223344556677", call.creds.username.encode()) for f in frames] + real
    async with SipClient(call.ws_url, call.creds) as client:
        for frame in frames:
            await client.send_raw(frame)
        await asyncio.sleep(0)
        await healthy(live, client, call.creds.domain)
