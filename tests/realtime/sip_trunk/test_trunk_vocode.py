"""The Vocode dialect dials for real: ``POST /dialects/vocode/v1/calls/create`` from a number on a SIP
carrier makes a real baresip phone ring over the trunk; the phone answers and hears the agent, and the
dialect's call view and the Vocode agent's webhook follow the real call."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.support.baresip import Baresip, phone_wav
from tests.support.fake_openai import FakeOpenAI, Reply, text_events
from tests.support.live import LiveServer
from tests.support.receiver import Receiver
from tests.support.speech import BOOKING
from tests.support.trunk import trunk_number, wait_ended

pytestmark = pytest.mark.speech

CREATE = "/dialects/vocode/v1/calls/create"
CALLEE = "+14155550199"
GREETING = "Hello, this is the dental clinic calling to confirm your appointment."
ANSWER = "Tomorrow at three works. See you then."


async def vocode_view(live: LiveServer, auth: dict[str, str], vocode_id: str) -> dict[str, Any]:
    r = await live.world.client.get("/dialects/vocode/v1/calls", params={"id": vocode_id}, headers=auth)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def wait_view(
    live: LiveServer, auth: dict[str, str], vocode_id: str, status: str, *, timeout: float = 60
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    view: dict[str, Any] = {}
    while time.monotonic() < deadline:
        view = await vocode_view(live, auth, vocode_id)
        if view["status"] == status:
            return view
        await asyncio.sleep(0.1)
    raise AssertionError(f"the Vocode view never showed {status!r}: {view}")


async def test_vocode_create_call_rings_a_real_phone_and_its_views_and_webhooks_follow(
    live: LiveServer, receiver: Receiver, fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    booking = phone_wav(BOOKING, tmp_path / "booking.wav", engine="piper", tail_silence_s=20.0)
    async with Baresip(tmp_path, user=CALLEE) as phone:
        number = await trunk_number(
            live, outbound={"host": "127.0.0.1", "port": phone.sip_port, "transport": "udp"}
        )
        team, auth = number.team, number.team.auth()
        r = await live.world.client.post(
            "/v1/webhook-signing-secret/rotate", json={"overlap_s": 0}, headers=auth
        )
        assert r.status_code == 200, r.text
        receiver.secrets = {"team": r.json()["secret"]}
        subscriptions = ["event_phone_call_connected", "event_phone_call_ended", "event_message"]
        agent = {
            "prompt": "You call patients to confirm their appointments.",
            "initial_message": GREETING,
            "voice": {"type": "voice_azure", "voice_name": "en-US-JennyNeural"},
            "webhook": {"subscriptions": subscriptions, "url": receiver.url + "/vocode"},
        }
        # The Vocode agent is made by a first create from a number without a carrier (it fails at
        # once, telephony_unavailable: did_not_connect is not subscribed), then given the fake LLM.
        r = await live.world.client.post("/v1/phone-numbers", json={"number": "+14155550100"}, headers=auth)
        assert r.status_code == 201, r.text
        body = {"from_number": "+14155550100", "to_number": CALLEE, "agent": agent}
        r = await live.world.client.post(CREATE, json=body, headers=auth)
        assert r.status_code == 200 and r.json()["status"] == "error", r.text
        agent_id = f"agt_{uuid.UUID(r.json()['agent']['id']).hex}"
        llm = {"engine": "openai", "base_url": fake_openai.base_url, "model": "fake"}
        r = await live.world.client.patch(f"/v1/agents/{agent_id}", json={"llm": llm}, headers=auth)
        assert r.status_code == 200, r.text
        fake_openai.replies.append(Reply(events=text_events(ANSWER)))

        body = {"from_number": number.number, "to_number": CALLEE, "agent": agent_id}
        r = await live.world.client.post(CREATE, json=body, headers=auth)
        assert r.status_code == 200, r.text
        created = r.json()
        assert created["status"] in ("not_started", "in_progress"), created  # placed, not failed
        assert "error_message" not in created
        vocode_id = created["id"]
        call_id = f"call_{uuid.UUID(vocode_id).hex}"

        incoming = await phone.wait_event("CALL_INCOMING", "CALL_ESTABLISHED")
        assert number.number.lstrip("+") in incoming["peeruri"]  # from the Vocode call's from_number
        heard = await phone.wait_heard(1.5)  # the agent's greeting over G.711, as baresip recorded it
        assert heard >= 1.5

        live_view = await wait_view(live, auth, vocode_id, "in_progress")
        assert live_view["to_number"] == CALLEE and live_view["from_number"] == number.number
        assert "start_time" in live_view and "end_time" not in live_view
        deadline = time.monotonic() + 60
        while "BOT: " not in live_view["transcript"] and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
            live_view = await vocode_view(live, auth, vocode_id)
        assert live_view["transcript"].startswith(f"BOT: {GREETING}"), live_view["transcript"]

        await phone.set_source(booking)  # the callee answers the agent
        while "BOT: Tomorrow at three" not in live_view["transcript"] and time.monotonic() < deadline + 60:
            await asyncio.sleep(0.2)
            live_view = await vocode_view(live, auth, vocode_id)
        lines = live_view["transcript"].splitlines()
        assert lines[1].startswith("HUMAN: ") and "appointment" in lines[1].lower(), lines
        assert lines[2] == f"BOT: {ANSWER}", lines
        assert "tomorrow" in fake_openai.requests[-1]["messages"][-1]["content"].lower()

        r = await live.world.client.post(
            "/dialects/vocode/v1/calls/end", params={"id": vocode_id}, headers=auth
        )
        assert r.status_code == 200, r.text
        await phone.wait_event("CALL_CLOSED")  # the API's end became our BYE on the real call

    ended = await wait_ended(live, team, call_id)
    assert ended["end_reason"] == "api_request" and ended["kind"] == "phone"
    view = await wait_view(live, auth, vocode_id, "ended")
    assert "end_time" in view and view["transcript"].startswith(f"BOT: {GREETING}")

    hits = await receiver.wait_for(5, timeout=60)
    await asyncio.sleep(0.5)
    payloads = [h.payload for h in receiver.acked()]
    assert all(h.verified_by == ["team"] for h in receiver.acked())
    assert {p["conversation_id"] for p in payloads} == {vocode_id}
    types = [p["type"] for p in payloads]
    assert types[0] == "event_phone_call_connected" and types[-1] == "event_phone_call_ended", types
    assert payloads[0]["to_phone_number"] == CALLEE and payloads[0]["from_phone_number"] == number.number
    messages = [(p["sender"], p["text"]) for p in payloads if p["type"] == "event_message"]
    assert messages[0] == ("bot", GREETING) and messages[1][0] == "human" and messages[2] == ("bot", ANSWER)
    assert payloads[-1]["conversation_minutes"] > 0
    assert len(hits) == 5


async def test_a_busy_phone_is_an_ended_vocode_call_that_did_not_connect(
    live: LiveServer, receiver: Receiver, tmp_path: Path
) -> None:
    async with Baresip(tmp_path, user=CALLEE, answer="manual") as phone:
        number = await trunk_number(
            live, outbound={"host": "127.0.0.1", "port": phone.sip_port, "transport": "udp"}
        )
        auth = number.team.auth()
        r = await live.world.client.post(
            "/v1/webhook-signing-secret/rotate", json={"overlap_s": 0}, headers=auth
        )
        assert r.status_code == 200, r.text
        receiver.secrets = {"team": r.json()["secret"]}
        hook = {"subscriptions": ["event_phone_call_did_not_connect", "event_phone_call_connected"],
                "url": receiver.url + "/vocode"}  # fmt: skip
        agent = {"prompt": "You call patients.", "initial_message": GREETING, "webhook": hook,
                 "voice": {"type": "voice_azure", "voice_name": "en-US-JennyNeural"}}  # fmt: skip
        body = {"from_number": number.number, "to_number": CALLEE, "agent": agent}
        r = await live.world.client.post(CREATE, json=body, headers=auth)
        assert r.status_code == 200, r.text
        vocode_id = r.json()["id"]
        await phone.wait_event("CALL_INCOMING")
        await phone.hangup()  # refused while ringing: 486 Busy Here
        view = await wait_view(live, auth, vocode_id, "ended")
        assert "start_time" not in view and view["transcript"] == ""
    (hit,) = await receiver.wait_for(1, timeout=60)
    await asyncio.sleep(0.3)
    assert len(receiver.all()) == 1
    assert hit.payload == {
        "type": "event_phone_call_did_not_connect", "conversation_id": vocode_id, "telephony_status": "busy",
    }  # fmt: skip
