"""Inbound phone calls end to end: a real baresip phone dials a callgate number over the SIP trunk."""

from __future__ import annotations

from pathlib import Path

import pytest

from callgate.flows.demo import demo_flow
from tests.support.baresip import Baresip, phone_wav
from tests.support.live import LiveServer
from tests.support.speech import BOOKING
from tests.support.trunk import only_call, trunk_address, trunk_number, wait_ended, wait_turn

pytestmark = pytest.mark.speech


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_baresip_calls_a_number_hears_the_agent_and_books(
    live: LiveServer, tmp_path: Path, transport: str
) -> None:
    number = await trunk_number(live)
    host, port = trunk_address(live)
    booking = phone_wav(BOOKING, tmp_path / "booking.wav", engine="piper", tail_silence_s=20.0)
    async with Baresip(tmp_path, user="caller") as phone:
        await phone.dial(f"sip:{number.number}@{host}:{port};transport={transport}")
        await phone.wait_event("CALL_ESTABLISHED")
        call = await only_call(live, number.team)
        assert call["kind"] == "phone" and call["transport"] == "sip_trunk"
        await phone.wait_heard(1.0)  # the agent's greeting, as baresip recorded it
        await phone.set_source(booking)
        said = await wait_turn(live, number.team, call["id"], "appointment", role="user")
        assert "tomorrow" in said["text"].lower()
        await wait_turn(live, number.team, call["id"], r"tomorrow.*book that", role="agent")
        await phone.hangup()
        await phone.wait_event("CALL_CLOSED")
    ended = await wait_ended(live, number.team, call["id"])
    assert ended["status"] == "ended" and ended["end_reason"] == "caller_hangup"
    assert ended["kind"] == "phone"
    metrics = (await live.world.client.get("/metrics")).text.splitlines()
    packets = next(
        line
        for line in metrics
        if line.startswith('callgate_caller_rtp_packets_total{transport="sip_trunk"}')
    )
    assert float(packets.split()[1]) > 5 * 50  # the phone's RTP stream, counted by the session


async def test_a_digest_challenging_carrier_and_dtmf_reaching_the_flow(
    live: LiveServer, tmp_path: Path
) -> None:
    team = await live.world.team("acme")
    flow = demo_flow().model_dump(mode="json", exclude_none=True)
    flow["intents"].append({"name": "keypad", "keywords": ["dtmf 1"], "goto": "hours"})
    agent_id = await live.flow_agent(team, flow=flow)
    inbound = {"allowed_addresses": ["127.0.0.1/32"], "username": "pbx", "password": "s3cret-pass"}
    number = await trunk_number(live, team=team, agent_id=agent_id, inbound=inbound)
    host, port = trunk_address(live)
    async with Baresip(tmp_path, user="wrong", extra_account=";auth_user=pbx;auth_pass=guess") as stranger:
        await stranger.dial(f"sip:{number.number}@{host}:{port}")
        closed = await stranger.wait_event("CALL_CLOSED")
        assert "401" in closed.get("param", "") or "Unauthorized" in closed.get("param", "")
    assert live.runtime.sip_trunk is not None and live.runtime.sip_trunk.server.stats.challenged >= 2
    async with Baresip(tmp_path, user="pbx", extra_account=";auth_user=pbx;auth_pass=s3cret-pass") as phone:
        await phone.dial(f"sip:{number.number}@{host}:{port}")
        await phone.wait_event("CALL_ESTABLISHED")
        call = await only_call(live, team)
        await phone.wait_heard(1.0)
        await phone.send_dtmf("1#")
        keys = await wait_turn(live, team, call["id"], r"^DTMF 1#?$", role="user")
        assert keys["role"] == "user"
        await wait_turn(live, team, call["id"], r"open Monday to Friday", role="agent")
        r = await live.world.client.post(f"/v1/calls/{call['id']}/end", headers=team.auth())
        assert r.status_code in (200, 202), r.text
        await phone.wait_event("CALL_CLOSED")  # our BYE
    ended = await wait_ended(live, team, call["id"])
    assert ended["end_reason"] == "api_request"
