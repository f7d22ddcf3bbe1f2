"""Whole calls over SIP: a Python softphone (signalling here, media by aiortc), embedded speech stack."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support.live import LiveServer, wait_settled
from tests.support.rtvi_client import nonsilent_seconds
from tests.support.sip_client import Caller, SipCall, SipClient, sip_call_status
from tests.support.speech import BOOKING, speech_pcm

pytestmark = pytest.mark.speech


async def answered(call: SipCall, client: SipClient) -> Caller:
    assert (await client.register()).code == 200
    caller = Caller(client)
    response = await caller.invite(call.target, call.headers)
    assert response.code == 200, response.phrase
    codes = [r.code for r in client.inbox.responses if r.cseq.method == "INVITE"]
    assert codes[:2] == [100, 401] and codes[-3:] == [100, 180, 200]
    assert response.headers.get("Content-Type") == "application/sdp"
    assert "a=fingerprint:" in response.body.decode()
    return caller


async def heard_greeting(caller: Caller) -> None:
    for _ in range(300):
        if nonsilent_seconds(caller.heard.since(0), 16000) >= 1.0:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the agent's greeting was not heard")


async def turns(live: LiveServer, call: SipCall) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = (await sip_call_status(live, call))["transcript"]
    return found


async def wait_turn(live: LiveServer, call: SipCall, pattern: str, *, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for turn in await turns(live, call):
            if re.search(pattern, turn["text"], re.IGNORECASE):
                return turn
        await asyncio.sleep(0.1)
    raise AssertionError(f"no turn matching {pattern!r}: {await turns(live, call)}")


def hold(sdp: str, direction: str) -> str:
    return re.sub(r"a=(sendrecv|sendonly|recvonly|inactive)", f"a={direction}", sdp)


async def test_call_answered_talks_holds_takes_dtmf_and_caller_hangs_up(
    live: LiveServer, sip_call: SipCall, tmp_path: Path
) -> None:
    speech = speech_pcm(BOOKING, tmp_path)
    async with SipClient(sip_call.ws_url, sip_call.creds) as client:
        caller = await answered(sip_call, client)
        await heard_greeting(caller)
        assert (await sip_call_status(live, sip_call))["status"] == "in_progress"

        caller.track.put(speech + bytes(32000))
        said = await wait_turn(live, sip_call, "appointment")
        assert said["role"] == "user" and "tomorrow" in said["text"].lower()

        offer = caller.pc.localDescription.sdp
        content = [("Content-Type", "application/sdp")]
        held = await caller.in_dialog("INVITE", headers=content, body=hold(offer, "sendonly").encode())
        assert held.code == 200 and "a=recvonly" in held.body.decode()
        await caller.ack(held.cseq.sequence)
        resumed = await caller.in_dialog("INVITE", headers=content, body=offer.encode())
        assert resumed.code == 200 and "a=sendrecv" in resumed.body.decode()
        assert _origin_version(resumed.body.decode()) > _origin_version(held.body.decode())
        await caller.ack(resumed.cseq.sequence)
        restart = re.sub(r"a=ice-ufrag:\S+", "a=ice-ufrag:zzzz", offer)
        assert (await caller.in_dialog("INVITE", headers=content, body=restart.encode())).code == 488
        assert (await caller.in_dialog("UPDATE")).code == 200  # a session-timer refresh

        again = Caller(client)
        try:
            second = await again.invite(sip_call.target, sip_call.headers)
        finally:
            await again.close()
        assert (second.code, second.phrase) == (403, "Credentials Already Used")

        relay = [("Content-Type", "application/dtmf-relay")]
        for key in "12":
            assert (
                await caller.in_dialog(
                    "INFO", headers=relay, body=f"Signal={key}\r\nDuration=160\r\n".encode()
                )
            ).code == 200
        dtmf = [("Content-Type", "application/dtmf")]
        assert (await caller.in_dialog("INFO", headers=dtmf, body=b"#")).code == 200
        assert (await caller.in_dialog("INFO", headers=dtmf, body=b"x")).code == 400
        assert (
            await caller.in_dialog("INFO", headers=[("Content-Type", "text/plain")], body=b"1")
        ).code == 415
        keys = await wait_turn(live, sip_call, r"^DTMF 12#$")
        assert keys["role"] == "user"

        bye = await caller.in_dialog("BYE")
        assert bye.code == 200
        await caller.close()
    body = await wait_settled(live, sip_call.team.auth(), sip_call.id)
    assert body["status"] == "ended" and body["end_reason"] == "caller_hangup"


def _origin_version(sdp: str) -> int:
    match = re.search(r"^o=\S+ \S+ (\d+) ", sdp, re.MULTILINE)
    assert match
    return int(match.group(1))


async def test_api_end_sends_bye(live: LiveServer, sip_call: SipCall) -> None:
    async with SipClient(sip_call.ws_url, sip_call.creds) as client:
        caller = await answered(sip_call, client)
        await heard_greeting(caller)
        r = await live.world.client.post(f"/v1/calls/{sip_call.id}/end", headers=sip_call.team.auth())
        assert r.status_code in (200, 202), r.text
        await client.wait(lambda: any(req.method == "BYE" for req in client.inbox.requests), timeout=10)
        bye = next(req for req in client.inbox.requests if req.method == "BYE")
        assert caller.dialog is not None
        assert bye.call_id == caller.dialog.call_id
        assert bye.from_address.parameters["tag"] == caller.dialog.to_tag
        assert str(bye.uri) == client.contact
        assert "api_request" in (bye.headers.get("Reason") or "")
        await caller.close()
    body = await wait_settled(live, sip_call.team.auth(), sip_call.id)
    assert body["end_reason"] == "api_request"


async def test_agent_end_call_sends_bye(live: LiveServer, sip_call: SipCall, tmp_path: Path) -> None:
    goodbye = speech_pcm("No thanks, that's all. Goodbye.", tmp_path)
    async with SipClient(sip_call.ws_url, sip_call.creds) as client:
        caller = await answered(sip_call, client)
        await heard_greeting(caller)
        caller.track.put(goodbye + bytes(32000))
        await client.wait(lambda: any(req.method == "BYE" for req in client.inbox.requests), timeout=40)
        bye = next(req for req in client.inbox.requests if req.method == "BYE")
        assert "agent_ended" in (bye.headers.get("Reason") or "")
        await caller.close()
    body = await wait_settled(live, sip_call.team.auth(), sip_call.id)
    assert body["end_reason"] == "agent_ended"
    said = [t["text"].lower() for t in body["transcript"] if t["role"] == "agent"]  # type: ignore[attr-defined]
    assert any("goodbye" in text for text in said)


async def test_socket_lost_mid_call(live: LiveServer, sip_call: SipCall) -> None:
    async with SipClient(sip_call.ws_url, sip_call.creds) as client:
        caller = await answered(sip_call, client)
        await heard_greeting(caller)
    await caller.close()
    body = await wait_settled(live, sip_call.team.auth(), sip_call.id)
    assert body["end_reason"] == "transport_lost"
