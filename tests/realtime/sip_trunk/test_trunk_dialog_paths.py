"""The trunk's dialog paths that need a far end misbehaving on cue, with a scripted SIP peer over real
UDP sockets against the live server: hold and resume (re-INVITE) with the RTP inactivity timer waiting
while held, RTP that stops ending the call ``transport_lost``, a 200 OK never ACKed ending it
``transport_lost``, and a 2xx that crosses our CANCEL (ACKed, then BYE)."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import pytest

from callgate.config import Settings
from tests.realtime.sip_trunk.conftest import CALLGATE_RTP
from tests.support.live import LiveServer
from tests.support.sip_peer import ScriptedPeer, body, header, method, sdp_media, sdp_offer, status
from tests.support.trunk import get_call, only_call, trunk_address, trunk_number, wait_ended
from tests.support.world import make_settings

RTP_TIMEOUT_S = 2.0


@pytest.fixture
def live_settings(tmp_path: Path, sqlite_template: Path) -> Settings:
    path = tmp_path / "callgate.db"
    path.write_bytes(sqlite_template.read_bytes())
    return make_settings(
        tmp_path,
        f"sqlite+aiosqlite:///{path}",
        public_url=None,
        sip_listen="127.0.0.1:0",
        rtp_ports=CALLGATE_RTP,
        rtp_timeout_s=RTP_TIMEOUT_S,
    )


def contact(message: bytes) -> str:
    found = re.search(r"<([^>]+)>", header(message, "Contact") or "")
    assert found, message
    return found.group(1)


async def wait_status(live: LiveServer, number: object, call_id: str, wanted: str) -> None:
    team = number.team  # type: ignore[attr-defined]
    deadline = time.monotonic() + 60
    while (await get_call(live, team, call_id))["status"] != wanted:
        assert time.monotonic() < deadline, f"the call never became {wanted}"
        await asyncio.sleep(0.1)


async def test_hold_keeps_a_silent_call_and_silence_after_resume_ends_it_transport_lost(
    live: LiveServer,
) -> None:
    number = await trunk_number(live)
    trunk = trunk_address(live)
    uri = f"sip:{number.number}@{trunk[0]}:{trunk[1]}"
    async with ScriptedPeer() as peer:
        peer.request("INVITE", uri, trunk, to_header=f"<{uri}>", cseq=1, sdp=sdp_offer(peer.rtp_port))
        ok = await peer.next()
        assert status(ok) == 200, ok
        to, target = header(ok, "To") or "", contact(ok)
        peer.request("ACK", target, trunk, to_header=to, cseq=1)
        media = sdp_media(body(ok))
        peer.start_rtp(media[:2])
        call = await only_call(live, number.team)
        await wait_status(live, number, call["id"], "in_progress")

        # Hold: the re-INVITE is answered in the same dialog, the direction mirrored.
        peer.request(
            "INVITE", target, trunk, to_header=to, sdp=sdp_offer(peer.rtp_port, "sendonly", version=2)
        )
        held = await peer.next()
        assert status(held) == 200 and header(held, "CSeq") == f"{peer.cseq} INVITE", held
        assert sdp_media(body(held)) == (*media[:2], "recvonly")
        peer.request("ACK", target, trunk, to_header=to, cseq=peer.cseq)
        await peer.stop_rtp()  # a held call may send nothing
        await asyncio.sleep(3 * RTP_TIMEOUT_S)
        assert (await get_call(live, number.team, call["id"]))["status"] == "in_progress"

        # Resume, then stay silent: the inactivity timer runs again and ends the call.
        peer.request(
            "INVITE", target, trunk, to_header=to, sdp=sdp_offer(peer.rtp_port, "sendrecv", version=3)
        )
        resumed = await peer.next()
        assert status(resumed) == 200 and sdp_media(body(resumed))[2] == "sendrecv"
        peer.request("ACK", target, trunk, to_header=to, cseq=peer.cseq)
        bye = await peer.next(timeout=60)
        assert method(bye) == "BYE", bye
        peer.respond(bye, 200, "OK", trunk)
    ended = await wait_ended(live, number.team, call["id"])
    assert ended["end_reason"] == "transport_lost"


async def test_a_200_ok_never_acked_is_resent_then_the_call_ends_transport_lost(live: LiveServer) -> None:
    number = await trunk_number(live)
    trunk = trunk_address(live)
    uri = f"sip:{number.number}@{trunk[0]}:{trunk[1]}"
    async with ScriptedPeer() as peer:
        peer.request("INVITE", uri, trunk, to_header=f"<{uri}>", cseq=1, sdp=sdp_offer(peer.rtp_port))
        oks = []
        while True:  # never ACKed: the 200 comes again (T1 doubling to T2), then a BYE after 64*T1
            message = await peer.next(timeout=60)
            if not oks and status(message) == 200:
                peer.start_rtp(sdp_media(body(message))[:2])  # media flows: only the ACK is missing
            if method(message) == "BYE":
                peer.respond(message, 200, "OK", trunk)
                break
            assert status(message) == 200, message
            oks.append(message)
        assert len(oks) >= 4 and len({header(m, "To") for m in oks}) == 1
        assert "no ACK" in (header(message, "Reason") or ""), message
    call = await only_call(live, number.team)
    ended = await wait_ended(live, number.team, call["id"])
    assert ended["end_reason"] == "transport_lost"


async def test_a_200_crossing_our_cancel_is_acked_and_hung_up(live: LiveServer) -> None:
    async with ScriptedPeer() as carrier:
        number = await trunk_number(
            live, outbound={"host": "127.0.0.1", "port": carrier.sip_port, "transport": "udp"}
        )
        r = await live.world.client.post(
            "/v1/phone-calls",
            json={"agent_id": number.agent_id, "from_number": number.number, "to_number": "+14155550199"},
            headers=number.team.auth(),
        )
        assert r.status_code == 201, r.text
        call_id = r.json()["id"]
        invite = await carrier.next()
        assert method(invite) == "INVITE"
        source = ("127.0.0.1", trunk_address(live)[1])
        carrier.respond(invite, 180, "Ringing", source, tag="callee")
        r = await live.world.client.post(f"/v1/calls/{call_id}/end", headers=number.team.auth())
        assert r.status_code in (200, 202), r.text
        cancel = await carrier.next()
        while method(cancel) == "INVITE":  # a retransmission that crossed our 180
            cancel = await carrier.next()
        assert method(cancel) == "CANCEL" and header(cancel, "Call-ID") == header(invite, "Call-ID")
        # The callee picked up as the CANCEL flew: 200 to the CANCEL, and 200 OK to the INVITE.
        carrier.respond(cancel, 200, "OK", source)
        carrier.respond(invite, 200, "OK", source, tag="callee", sdp=sdp_offer(carrier.rtp_port))
        seen: list[bytes] = []
        while not any(method(m) == "BYE" for m in seen):
            seen.append(await carrier.next())
        ack = next(m for m in seen if method(m) == "ACK")
        bye = next(m for m in seen if method(m) == "BYE")
        assert header(ack, "CSeq") == "1 ACK" and header(ack, "Call-ID") == header(invite, "Call-ID")
        assert "tag=callee" in (header(ack, "To") or "") and "tag=callee" in (header(bye, "To") or "")
        assert seen.index(ack) < seen.index(bye)
        carrier.respond(bye, 200, "OK", source)
    ended = await wait_ended(live, number.team, call_id)
    assert ended["end_reason"] == "api_request"


async def test_no_ack_and_no_rtp_still_hangs_up_the_dialog(live: LiveServer) -> None:
    """The RTP timeout fires before the ACK timeout: the call ends transport_lost and the far end,
    whose dialog stands since it sent the 200's INVITE, still gets a BYE."""
    number = await trunk_number(live)
    trunk = trunk_address(live)
    uri = f"sip:{number.number}@{trunk[0]}:{trunk[1]}"
    async with ScriptedPeer() as peer:
        peer.request("INVITE", uri, trunk, to_header=f"<{uri}>", cseq=1, sdp=sdp_offer(peer.rtp_port))
        while method(message := await peer.next(timeout=60)) != "BYE":
            assert status(message) == 200, message
        peer.respond(message, 200, "OK", trunk)
        assert "transport_lost" in (header(message, "Reason") or ""), message
    call = await only_call(live, number.team)
    ended = await wait_ended(live, number.team, call["id"])
    assert ended["end_reason"] == "transport_lost"
