"""A prompt agent's phone tools on a SIP trunk call: the fake OpenAI server streams the tool calls, a
scripted carrier (real UDP SIP and RTP) presses keys by SIP INFO, hears the agent's ``send_dtmf`` keys
as RFC 4733 events in the RTP stream, and is REFERred to the human by ``transfer_call``."""

from __future__ import annotations

import asyncio
import json
import re
import time

import pytest

from tests.support.fake_openai import FakeOpenAI, Reply, text_events, tool_events
from tests.support.live import LiveServer
from tests.support.sip_peer import ScriptedPeer, body, header, method, sdp_media, sdp_offer, status
from tests.support.trunk import only_call, trunk_address, trunk_number, wait_ended, wait_turn

pytestmark = pytest.mark.speech


def press(peer: ScriptedPeer, keys: str, target: str, trunk: tuple[str, int], to: str) -> None:
    for key in keys:
        peer.request("INFO", target, trunk, to_header=to, content_type="application/dtmf-relay",
                     sdp=f"Signal={key}\r\nDuration=160\r\n")  # fmt: skip


async def test_send_dtmf_presses_keys_on_the_line_and_transfer_call_refers_the_caller(
    live: LiveServer, fake_openai: FakeOpenAI
) -> None:
    team = await live.world.team("acme")
    async with ScriptedPeer() as peer:
        human = f"sip:front-desk@127.0.0.1:{peer.sip_port}"
        r = await live.world.client.post(
            "/v1/agents",
            json={
                "name": "ivr",
                "prompt": "You get callers through phone menus.",
                "llm": {"engine": "openai", "base_url": fake_openai.base_url, "model": "fake-model"},
                "tools": [{"type": "send_dtmf"}, {"type": "transfer_call", "target": human}],
            },
            headers=team.auth(),
        )
        assert r.status_code == 201, r.text
        number = await trunk_number(live, team=team, agent_id=r.json()["id"])
        fake_openai.replies += [
            Reply(events=tool_events("send_dtmf", '{"digits": "42#"}', call_id="keys")),
            Reply(events=text_events("Done.")),
            Reply(events=tool_events("transfer_call", "{}", text="Putting you through.", call_id="xfer")),
        ]
        trunk = trunk_address(live)
        uri = f"sip:{number.number}@{trunk[0]}:{trunk[1]}"
        peer.request("INVITE", uri, trunk, to_header=f"<{uri}>", cseq=1, sdp=sdp_offer(peer.rtp_port))
        ok = await peer.next()
        assert status(ok) == 200, ok
        to = header(ok, "To") or ""
        found = re.search(r"<([^>]+)>", header(ok, "Contact") or "")
        assert found
        target = found.group(1)
        peer.request("ACK", target, trunk, to_header=to, cseq=1)
        peer.start_rtp(sdp_media(body(ok))[:2])
        call = await only_call(live, team)

        press(peer, "1#", target, trunk, to)  # the caller's turn: "DTMF 1#"
        deadline = time.monotonic() + 30
        while peer.keys_heard() != "42#":  # the agent's keys, as RFC 4733 events in our RTP
            assert time.monotonic() < deadline, f"keys heard: {peer.keys_heard()!r}"
            await asyncio.sleep(0.05)
        await wait_turn(live, team, call["id"], "^Done", role="agent", timeout=30)
        sent = [m for m in fake_openai.requests[1]["messages"] if m["role"] == "tool"]
        assert json.loads(sent[0]["content"]) == {"ok": True, "sent": "42#"}

        press(peer, "0#", target, trunk, to)
        while method(refer := await peer.next(timeout=60)) != "REFER":
            assert status(refer) == 200, refer  # the INFOs' answers
        assert header(refer, "Refer-To") == f"<{human}>"
        peer.respond(refer, 202, "Accepted", trunk)
        peer.request("NOTIFY", target, trunk, to_header=to, content_type="message/sipfrag;version=2.0",
                     extra="Event: refer\r\nSubscription-State: terminated;reason=noresource\r\n",
                     sdp="SIP/2.0 200 OK\r\n")  # fmt: skip
        assert status(await peer.next()) == 200  # the NOTIFY's answer
        bye = await peer.next(timeout=30)  # the transfer went through: callgate leaves
        assert method(bye) == "BYE", bye
        peer.respond(bye, 200, "OK", trunk)

    ended = await wait_ended(live, team, call["id"])
    assert ended["end_reason"] == "transferred" and ended["data"]["transfer_target"] == human
    tools = [t["tool"] for t in ended["transcript"] if t["role"] == "tool"]
    assert [(t["name"], t["error"]) for t in tools] == [("send_dtmf", None), ("transfer_call", None)]
    assert tools[0]["result"] == {"ok": True, "sent": "42#"}
    assert [t["text"] for t in ended["transcript"] if t["role"] == "user"] == ["DTMF 1#", "DTMF 0#"]
