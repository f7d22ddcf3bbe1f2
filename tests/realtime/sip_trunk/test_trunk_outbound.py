"""Outbound phone calls: POST /v1/phone-calls makes a real baresip phone ring, over the SIP trunk."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from tests.support.baresip import Baresip
from tests.support.kamailio import Kamailio
from tests.support.live import LiveServer
from tests.support.trunk import TrunkNumber, get_call, trunk_number, wait_ended

pytestmark = pytest.mark.speech

CALLEE = "+14155550199"


async def place(live: LiveServer, number: TrunkNumber, **fields: Any) -> dict[str, Any]:
    body = {"agent_id": number.agent_id, "from_number": number.number, "to_number": CALLEE, **fields}
    r = await live.world.client.post("/v1/phone-calls", json=body, headers=number.team.auth())
    assert r.status_code == 201, r.text
    call: dict[str, Any] = r.json()
    assert call["kind"] == "phone"
    return call


def carrier(phone: Baresip, transport: str = "udp") -> dict[str, Any]:
    return {"host": "127.0.0.1", "port": phone.sip_port, "transport": transport}


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_the_agent_calls_a_phone_that_answers_and_the_api_hangs_up(
    live: LiveServer, tmp_path: Path, transport: str
) -> None:
    async with Baresip(tmp_path, user=CALLEE) as phone:
        number = await trunk_number(live, outbound=carrier(phone, transport))
        call = await place(live, number, metadata={"campaign": "spring"})
        incoming = await phone.wait_event("CALL_INCOMING", "CALL_ESTABLISHED")
        assert number.number.lstrip("+") in incoming["peeruri"]
        await phone.wait_heard(1.0)  # the agent talks
        assert (await get_call(live, number.team, call["id"]))["status"] == "in_progress"
        r = await live.world.client.post(f"/v1/calls/{call['id']}/end", headers=number.team.auth())
        assert r.status_code in (200, 202), r.text
        await phone.wait_event("CALL_CLOSED")  # our BYE
    ended = await wait_ended(live, number.team, call["id"])
    assert ended["end_reason"] == "api_request" and ended["metadata"] == {"campaign": "spring"}


async def test_busy_and_unanswered_calls_end_with_their_reasons(live: LiveServer, tmp_path: Path) -> None:
    async with Baresip(tmp_path, user=CALLEE, answer="manual") as phone:
        number = await trunk_number(live, outbound=carrier(phone))
        busy = await place(live, number)
        await phone.wait_event("CALL_INCOMING")
        await phone.hangup()  # a ringing call refused: 486 Busy Here
        assert (await wait_ended(live, number.team, busy["id"]))["end_reason"] == "busy"

        unanswered = await place(live, number, ring_timeout_s=2)
        await phone.wait_event("CALL_INCOMING")
        ended = await wait_ended(live, number.team, unanswered["id"])
        assert ended["end_reason"] == "no_answer" and ended["status"] == "ended"
        await phone.wait_event("CALL_CLOSED")  # our CANCEL reached it

        ringing = await place(live, number)
        await phone.wait_event("CALL_INCOMING")
        r = await live.world.client.post(f"/v1/calls/{ringing['id']}/end", headers=number.team.auth())
        assert r.status_code in (200, 202), r.text
        await phone.wait_event("CALL_CLOSED")  # CANCEL while ringing
        assert (await wait_ended(live, number.team, ringing["id"]))["end_reason"] == "api_request"


async def test_a_number_without_a_carrier_is_not_placed(live: LiveServer) -> None:
    team = await live.world.team("acme")
    r = await live.world.client.post(
        "/v1/phone-numbers", json={"number": "+14155550100", "agent_id": team.agent_id}, headers=team.auth()
    )
    assert r.status_code == 201, r.text
    body = {"agent_id": team.agent_id, "from_number": "+14155550100", "to_number": CALLEE}
    r = await live.world.client.post("/v1/phone-calls", json=body, headers=team.auth())
    assert r.status_code == 201, r.text
    assert r.json()["status"] == "failed" and r.json()["end_reason"] == "telephony_unavailable"


class ScriptedCarrier(asyncio.DatagramProtocol):
    """A tiny UAS over UDP: challenges the first INVITE (407), then declines (603); keeps what came."""

    def __init__(self) -> None:
        self.requests: list[bytes] = []
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.requests.append(data)
        if not data.startswith(b"INVITE") or self.transport is None:
            return
        head = data.split(b"\r\n\r\n", 1)[0].decode()
        echoed = [line for line in head.split("\r\n")[1:] if line.split(":", 1)[0] in ECHOED]
        if b"Proxy-Authorization" not in data:
            status, extra = (
                "407 Proxy Authentication Required",
                ['Proxy-Authenticate: Digest realm="carrier", nonce="abc123", algorithm=MD5, qop="auth"'],
            )
        else:
            status, extra = "603 Decline", []
        lines = [f"SIP/2.0 {status}", *echoed, *extra, "Content-Length: 0", "", ""]
        self.transport.sendto("\r\n".join(lines).encode(), addr)


ECHOED = ("Via", "From", "To", "Call-ID", "CSeq")


async def test_a_challenging_carrier_gets_credentials_and_a_decline_ends_declined(live: LiveServer) -> None:
    loop = asyncio.get_running_loop()
    transport, uas = await loop.create_datagram_endpoint(ScriptedCarrier, local_addr=("127.0.0.1", 0))
    try:
        port = transport.get_extra_info("sockname")[1]
        outbound = {
            "host": "127.0.0.1", "port": port, "transport": "udp", "username": "acct", "password": "pw",
        }  # fmt: skip
        number = await trunk_number(live, outbound=outbound)
        call = await place(live, number)
        ended = await wait_ended(live, number.team, call["id"])
        assert ended["end_reason"] == "declined" and ended["status"] == "ended"
        answered = [r for r in uas.requests if r.startswith(b"INVITE") and b"Proxy-Authorization" in r]
        assert answered and b"Proxy-Authorization: Digest" in answered[0]
        assert b'username="acct"' in answered[0] and b"qop=auth" in answered[0]
        assert sum(1 for r in uas.requests if r.startswith(b"ACK")) >= 2  # both failures ACKed
    finally:
        transport.close()


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_through_a_digest_challenging_kamailio_proxy_to_a_phone(
    live: LiveServer, tmp_path: Path, transport: str
) -> None:
    """callgate → kamailio (407, then relays with the carrier's outbound credentials) → baresip."""
    async with (
        Baresip(tmp_path, user=CALLEE) as phone,
        Kamailio(tmp_path, target=("127.0.0.1", phone.sip_port), username="acct", password="s3cret") as proxy,
    ):
        outbound = {
            "host": "127.0.0.1", "port": proxy.port, "transport": transport,
            "username": "acct", "password": "s3cret",
        }  # fmt: skip
        number = await trunk_number(live, outbound=outbound)
        call = await place(live, number)
        await phone.wait_event("CALL_INCOMING", "CALL_ESTABLISHED")
        await phone.wait_heard(1.0)  # the agent talks, media straight between callgate and baresip
        assert proxy.count("KAMAILIO-CHALLENGE") == 1 and proxy.count("KAMAILIO-RELAY") == 1
        r = await live.world.client.post(f"/v1/calls/{call['id']}/end", headers=number.team.auth())
        assert r.status_code in (200, 202), r.text
        await phone.wait_event("CALL_CLOSED")  # our BYE, loose-routed through the proxy
    ended = await wait_ended(live, number.team, call["id"])
    assert ended["end_reason"] == "api_request"


async def test_kamailio_refusing_wrong_credentials_ends_carrier_error(
    live: LiveServer, tmp_path: Path
) -> None:
    async with (
        Baresip(tmp_path, user=CALLEE) as phone,
        Kamailio(tmp_path, target=("127.0.0.1", phone.sip_port), username="acct", password="s3cret") as proxy,
    ):
        outbound = {"host": "127.0.0.1", "port": proxy.port, "username": "acct", "password": "wrong"}
        number = await trunk_number(live, outbound=outbound)
        call = await place(live, number)
        ended = await wait_ended(live, number.team, call["id"])
        assert ended["end_reason"] == "carrier_error" and ended["status"] == "failed"
        assert proxy.count("KAMAILIO-CHALLENGE") == 2  # answered once, challenged again: given up
        assert proxy.count("KAMAILIO-RELAY") == 0 and phone.all_events == []
