"""Transfer to a human over the SIP trunk, end to end with real phones: the flow's ``transfer`` step
ends the session ``transferred`` and the trunk hands the caller on — with REFER when the far end takes
it (baresip does: it calls the target itself), or, when the carrier refuses REFER (kamailio answering
403), by bridging the caller to a second outbound leg through the same carrier."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import pytest

from callgate.flows.demo import demo_flow
from tests.support.baresip import Baresip, phone_wav
from tests.support.kamailio import Kamailio
from tests.support.live import LiveServer
from tests.support.rtvi_client import nonsilent_seconds
from tests.support.sip_peer import ScriptedPeer, header, method, sdp_offer, status
from tests.support.trunk import TrunkNumber, trunk_address, trunk_number, wait_ended, wait_turn

pytestmark = pytest.mark.speech

CALLEE = "+14155550199"
HUMAN = "+14155550177"


async def transferring_number(live: LiveServer, outbound: dict[str, Any]) -> TrunkNumber:
    """A number whose flow agent transfers to ``{{front_desk}}`` when the caller presses 0."""
    team = await live.world.team("acme")
    flow = demo_flow().model_dump(mode="json", exclude_none=True)
    flow["intents"].append({"name": "operator", "keywords": ["dtmf 0"], "goto": "human"})
    agent_id = await live.flow_agent(team, flow=flow)
    return await trunk_number(live, team=team, agent_id=agent_id, outbound=outbound)


async def place(live: LiveServer, number: TrunkNumber, front_desk: str) -> dict[str, Any]:
    body = {
        "agent_id": number.agent_id,
        "from_number": number.number,
        "to_number": CALLEE,
        "variables": {"front_desk": front_desk},
    }
    r = await live.world.client.post("/v1/phone-calls", json=body, headers=number.team.auth())
    assert r.status_code == 201, r.text
    call: dict[str, Any] = r.json()
    return call


async def ask_for_a_human(live: LiveServer, number: TrunkNumber, phone: Baresip, call_id: str) -> None:
    await phone.wait_event("CALL_ESTABLISHED")
    await phone.wait_heard(1.0)  # the greeting
    await phone.send_dtmf("0#")
    await wait_turn(live, number.team, call_id, r"put you through", role="agent")


async def test_a_transfer_sends_refer_and_the_far_end_calls_the_human(
    live: LiveServer, tmp_path: Path
) -> None:
    async with (
        Baresip(tmp_path, user=CALLEE) as phone,
        Baresip(tmp_path, user="human", rtp_ports=(30500, 30999)) as human,
    ):
        number = await transferring_number(
            live, {"host": "127.0.0.1", "port": phone.sip_port, "transport": "udp"}
        )
        target = human.uri
        call = await place(live, number, target)
        await ask_for_a_human(live, number, phone, call["id"])
        # The caller's phone took the REFER and called the human itself (a blind transfer).
        rung = await human.wait_event("CALL_ESTABLISHED", timeout=60)
        assert CALLEE.lstrip("+") in rung["peeruri"] or "127.0.0.1" in rung["peeruri"]
        ended = await wait_ended(live, number.team, call["id"])
        assert ended["end_reason"] == "transferred" and ended["data"]["transfer_target"] == target
        # callgate's leg is hung up once the transfer went through; the phone and the human talk on.
        trunk = live.runtime.sip_trunk
        assert trunk is not None
        for _ in range(300):
            if trunk.server.dialog_count == 0:
                break
            await asyncio.sleep(0.1)
        assert trunk.server.dialog_count == 0
        assert not any(e.get("type") == "CALL_CLOSED" for e in human.all_events)
        closed = await phone.wait_event("CALL_CLOSED")  # our BYE after the transfer, on our leg only
        callgate = f"sip:{number.number}@127.0.0.1"
        assert closed["peeruri"] == callgate
        seen = [(e.get("type"), e.get("param"), e.get("peeruri")) for e in phone.all_events]
        assert ("TRANSFER", f"<{target}>", callgate) in seen, seen  # our REFER's Refer-To


async def test_an_inbound_caller_is_referred_to_the_human(live: LiveServer, tmp_path: Path) -> None:
    """The same blind transfer on a call the phone placed: the REFER goes back to the caller's UA."""
    async with (
        Baresip(tmp_path, user="caller") as phone,
        Baresip(tmp_path, user="human", rtp_ports=(30500, 30999)) as human,
    ):
        team = await live.world.team("acme")
        flow = demo_flow().model_dump(mode="json", exclude_none=True)
        flow["intents"].append({"name": "operator", "keywords": ["dtmf 0"], "goto": "human"})
        flow["variables"]["front_desk"] = human.uri
        agent_id = await live.flow_agent(team, flow=flow)
        number = await trunk_number(live, team=team, agent_id=agent_id)
        host, port = trunk_address(live)
        await phone.dial(f"sip:{number.number}@{host}:{port};transport=tcp")
        await phone.wait_event("CALL_ESTABLISHED")
        await phone.wait_heard(1.0)
        await phone.send_dtmf("0#")
        await human.wait_event("CALL_ESTABLISHED", timeout=60)
        closed = await phone.wait_event("CALL_CLOSED")  # our leg, BYEd once the transfer went through
        assert f"{host}:{port}" in closed["peeruri"] or number.number in closed["peeruri"], closed
        seen = [(e.get("type"), e.get("param")) for e in phone.all_events]
        assert ("TRANSFER", f"<{human.uri}>") in seen, seen
        r = await live.world.client.get("/v1/calls", headers=team.auth())
        (call,) = r.json()["data"]
    ended = await wait_ended(live, team, call["id"])
    assert ended["end_reason"] == "transferred" and ended["data"]["transfer_target"] == human.uri


async def test_a_carrier_refusing_refer_gets_the_caller_bridged_to_a_second_leg(
    live: LiveServer, tmp_path: Path
) -> None:
    speech = phone_wav(
        "This is the front desk speaking, how can I help you today?", tmp_path / "desk.wav",
        tail_silence_s=60.0,
    )  # fmt: skip
    async with (
        Baresip(tmp_path, user=CALLEE) as phone,
        Baresip(tmp_path, user=HUMAN, rtp_ports=(30500, 30999), source=speech) as human,
        Kamailio(
            tmp_path, target=("127.0.0.1", phone.sip_port), username="acct", password="s3cret",
            routes={HUMAN: ("127.0.0.1", human.sip_port)}, refuse_refer=True,
        ) as carrier,
    ):  # fmt: skip
        outbound = {
            "host": "127.0.0.1", "port": carrier.port, "transport": "udp",
            "username": "acct", "password": "s3cret",
        }  # fmt: skip
        number = await transferring_number(live, outbound)
        target = f"tel:{HUMAN}"
        call = await place(live, number, target)
        await ask_for_a_human(live, number, phone, call["id"])
        await human.wait_event("CALL_ESTABLISHED", timeout=60)  # the second leg, through the carrier
        assert carrier.count("KAMAILIO-REFUSED-REFER") == 1
        refused = carrier.log.read_text().split("KAMAILIO-REFUSED-REFER", 1)[1].splitlines()[0]
        assert f"Refer-To: <sip:{HUMAN}@127.0.0.1:{carrier.port}>" in refused, refused
        assert f"Referred-By: <sip:{number.number}@127.0.0.1>" in refused, refused
        assert carrier.count("KAMAILIO-CHALLENGE") == 2 and carrier.count("KAMAILIO-RELAY") == 2
        ended = await wait_ended(live, number.team, call["id"])
        assert ended["end_reason"] == "transferred" and ended["data"]["transfer_target"] == target
        # RTP is relayed both ways: the caller hears the front desk, the front desk hears the caller.
        before = nonsilent_seconds(phone.heard(), 8000)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        while nonsilent_seconds(phone.heard(), 8000) < before + 1.5:
            assert loop.time() < deadline, "the caller never heard the front desk through the bridge"
            await asyncio.sleep(0.2)
        await phone.set_source(
            phone_wav("Hello, I need to move my appointment.", tmp_path / "caller.wav", tail_silence_s=30)
        )
        await human.wait_heard(1.0)
        await human.hangup()  # the front desk hangs up: the caller's leg gets our BYE
        await phone.wait_event("CALL_CLOSED", timeout=30)
    trunk = live.runtime.sip_trunk
    assert trunk is not None and trunk.server.dialog_count == 0


@pytest.mark.parametrize("far_end", ["accepts_then_fails", "refuses_and_the_bridge_is_busy"])
async def test_transfer_failures_hang_up_the_caller_leg(live: LiveServer, far_end: str) -> None:
    """A scripted carrier: the REFER is taken (202) but its NOTIFY reports the target busy, or the REFER
    is refused (405) and the bridged leg's INVITE is answered busy. Either way callgate's leg gets a BYE
    and the call stays ended ``transferred`` with its target."""
    async with ScriptedPeer() as carrier:
        number = await transferring_number(
            live, {"host": "127.0.0.1", "port": carrier.sip_port, "transport": "udp"}
        )
        target = f"tel:{HUMAN}"
        call = await place(live, number, target)
        invite = await carrier.next()
        assert method(invite) == "INVITE"
        trunk = ("127.0.0.1", trunk_address(live)[1])
        carrier.respond(invite, 200, "OK", trunk, tag="callee", sdp=sdp_offer(carrier.rtp_port))
        assert method(await carrier.next()) == "ACK"
        ours = header(invite, "From") or ""
        dialog = {"to_header": ours, "from_tag": "callee", "call_id": header(invite, "Call-ID")}
        contact = re.search(r"<([^>]+)>", header(invite, "Contact") or "")
        assert contact
        await wait_turn(live, number.team, call["id"], "clinic", role="agent")  # greeted
        for key in "0#":  # SIP INFO key presses
            carrier.request("INFO", contact.group(1), trunk, **dialog, content_type="application/dtmf-relay",
                            sdp=f"Signal={key}\r\nDuration=160\r\n")  # fmt: skip
        while method(refer := await carrier.next(timeout=60)) != "REFER":
            assert status(refer) == 200, refer  # the INFOs' answers
        assert header(refer, "Refer-To") == f"<sip:{HUMAN}@127.0.0.1:{carrier.sip_port}>"
        assert header(refer, "Referred-By") == f"<sip:{number.number}@127.0.0.1>"
        if far_end == "accepts_then_fails":
            carrier.respond(refer, 202, "Accepted", trunk)
            state = "Event: refer\r\nSubscription-State: terminated;reason=noresource\r\n"
            sipfrag = "message/sipfrag;version=2.0"
            carrier.request("NOTIFY", contact.group(1), trunk, **dialog, extra=state,
                            content_type=sipfrag, sdp="SIP/2.0 486 Busy Here\r\n")  # fmt: skip
            assert status(await carrier.next()) == 200  # the NOTIFY's answer
        else:
            carrier.respond(refer, 405, "Method Not Allowed", trunk)
            leg = await carrier.next()
            assert method(leg) == "INVITE" and header(leg, "Call-ID") != header(invite, "Call-ID")
            assert leg.startswith(f"INVITE sip:{HUMAN}@127.0.0.1:{carrier.sip_port} ".encode())
            carrier.respond(leg, 486, "Busy Here", trunk, tag="human")
            ack = await carrier.next()
            assert method(ack) == "ACK" and header(ack, "Call-ID") == header(leg, "Call-ID")
        bye = await carrier.next(timeout=30)
        assert method(bye) == "BYE" and header(bye, "Call-ID") == header(invite, "Call-ID"), bye
        carrier.respond(bye, 200, "OK", trunk)
    ended = await wait_ended(live, number.team, call["id"])
    assert ended["end_reason"] == "transferred" and ended["data"]["transfer_target"] == target
