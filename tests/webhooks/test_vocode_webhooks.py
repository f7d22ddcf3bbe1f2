"""A Vocode agent's ``webhook``: Vocode's event types and bodies, with the method the agent chose, signed
like every callgate delivery, sent to a real receiver — and the mapping checked on real envelopes."""

from __future__ import annotations

import asyncio
import json
import uuid
import wave
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from callgate.api.dialects.vocode.webhooks import call_webhook, event_type, render
from callgate.clock import utcnow
from callgate.domain import calls
from callgate.domain.lifecycle import CallStatus, EndReason, terminal_status
from callgate.domain.vocode_agents import EVENT_TYPES, vocode_webhook
from callgate.store.models_telephony import PhoneCall
from callgate.store.models_webhooks import WebhookEvent
from tests.support.receiver import Hit, Receiver
from tests.support.world import Team, World
from tests.webhooks.conftest import run_call

CREATE = "/dialects/vocode/v1/calls/create"
FROM, TO = "+14155550100", "+14155550199"
TURNS = (("agent", "Hello, how can I help?"), ("user", "Just testing."))
UNHEARD = (
    "agent",
    "",
    {
        "interrupted": True,
        "total_ms": None,
        "barge_ins": [
            {"outcome": "interrupted", "reason": "continued", "held_ms": 120.0, "words": "testing"}
        ],
    },
)
"""A reply the caller cut off before hearing any of it: kept in callgate's transcript, not in Vocode's."""


async def vocode_team(world: World) -> tuple[Team, str]:
    """A team with a registered number, and its signing secret (which signs call webhooks)."""
    team = await world.team("acme")
    r = await world.client.post("/v1/phone-numbers", json={"number": FROM}, headers=team.auth())
    assert r.status_code == 201, r.text
    r = await world.client.post(
        "/v1/webhook-signing-secret/rotate", json={"overlap_s": 0}, headers=team.auth()
    )
    assert r.status_code == 200, r.text
    secret: str = r.json()["secret"]
    return team, secret


def inline_agent(url: str, subscriptions: list[str], method: str = "POST") -> dict[str, Any]:
    return {
        "prompt": "You call to confirm an appointment.",
        "voice": {"type": "voice_azure", "voice_name": "en-US-JennyNeural"},
        "webhook": {"subscriptions": subscriptions, "url": url, "method": method},
    }


async def create(world: World, team: Team, agent: Any) -> dict[str, Any]:
    body = {"from_number": FROM, "to_number": TO, "agent": agent}
    r = await world.client.post(CREATE, json=body, headers=team.auth())
    assert r.status_code == 200, r.text
    call: dict[str, Any] = r.json()
    assert call["status"] == "error"  # FROM has no carrier: the call fails at once
    return call


def as_sent(method: str, body: dict[str, Any]) -> dict[str, Any]:
    """``body`` as the receiver reads it: JSON for POST; for GET, query parameters (text; JSON text for
    anything that is not a string)."""
    if method != "GET":
        return body
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in body.items()}


def assert_signed_as(hit: Hit, method: str) -> None:
    assert hit.verified_by == ["team"], hit
    assert hit.method == method
    if method == "GET":
        assert hit.body == b"" and "content-type" not in hit.headers
    else:
        assert hit.headers["content-type"] == "application/json" and hit.query == ""


def callgate_call_id(vocode_call_id: str) -> str:
    return f"call_{uuid.UUID(vocode_call_id).hex}"


@pytest.mark.parametrize("method", ["POST", "GET"])
async def test_a_call_that_cannot_be_placed_sends_did_not_connect_with_the_agent_s_method(
    world: World, receiver: Receiver, method: str
) -> None:
    team, secret = await vocode_team(world)
    receiver.secrets = {"team": secret}
    subscriptions = ["event_phone_call_did_not_connect", "event_phone_call_ended", "event_transcript"]
    first = await create(world, team, inline_agent(receiver.url + "/vocode", subscriptions, method))
    # The same agent named by its id: its calls get its webhook too.
    second = await create(world, team, first["agent"]["id"])

    hits = await receiver.wait_for(2)
    await asyncio.sleep(0.3)  # nothing more comes (call.created has no Vocode event)
    assert len(receiver.all()) == 2
    by_call = {h.payload["conversation_id"]: h for h in hits}
    for call in (first, second):
        hit = by_call[call["id"]]
        assert_signed_as(hit, method)
        assert hit.path == "/hooks/vocode"
        assert hit.payload == as_sent(
            method,
            {
                "type": "event_phone_call_did_not_connect",
                "conversation_id": call["id"],
                "telephony_status": "failed",
            },
        )
    assert len({h.id for h in hits}) == 2

    r = await world.client.get("/v1/webhook-deliveries", headers=team.auth())
    rows = r.json()["data"]
    assert sorted((d["event_type"], d["target"], d["status"]) for d in rows) == [
        ("call.failed", "call", "succeeded"),
        ("call.failed", "call", "succeeded"),
    ]
    assert {d["call_id"] for d in rows} == {callgate_call_id(first["id"]), callgate_call_id(second["id"])}


async def test_unsubscribed_event_types_are_not_sent(world: World, receiver: Receiver) -> None:
    team, secret = await vocode_team(world)
    receiver.secrets = {"team": secret}
    others = [t for t in EVENT_TYPES if t != "event_phone_call_did_not_connect"]
    quiet = await create(world, team, inline_agent(receiver.url + "/quiet", others))
    await create(world, team, inline_agent(receiver.url + "/none", []))
    # A subscribed call after them: once its event arrived, the dispatcher has seen theirs.
    loud = await create(
        world, team, inline_agent(receiver.url + "/loud", ["event_phone_call_did_not_connect"])
    )

    (hit,) = await receiver.wait_for(1)
    await asyncio.sleep(0.3)
    assert [h.path for h in receiver.all()] == ["/hooks/loud"]
    assert hit.payload["conversation_id"] == loud["id"] != quiet["id"]
    r = await world.client.get("/v1/webhook-deliveries", headers=team.auth())
    assert [d["call_id"] for d in r.json()["data"]] == [callgate_call_id(loud["id"])]  # none queued


async def test_a_webhook_url_the_guard_refuses_is_a_422_and_nothing_is_kept(world: World) -> None:
    team, _ = await vocode_team(world)
    body = {"from_number": FROM, "to_number": TO, "agent": inline_agent("http://169.254.169.254/x", [])}
    r = await world.client.post(CREATE, json=body, headers=team.auth())
    assert r.status_code == 422, r.text
    (entry,) = r.json()["detail"]
    assert entry["loc"] == ["body", "agent", "webhook", "url"] and entry["type"] == "outbound_refused"
    listed = await world.client.get("/dialects/vocode/v1/calls/list", headers=team.auth())
    assert listed.json()["total"] == 0


async def phone_call(world: World, team: Team, agent_id: str) -> str:
    """A phone call of a Vocode agent with the webhook the dialect gives it, as telephony will place it
    (``place_phone_call`` cannot connect yet)."""
    now = utcnow()

    async def job(s: Any) -> str:
        hook = call_webhook(await vocode_webhook(s, agent_id=agent_id))
        spec = calls.NewCall(
            agent_id=agent_id,
            transport="pstn",
            mode="audio",
            variables={},
            metadata={},
            kind="phone",
            dialect="vocode",
            webhook=hook,
        )
        call = await calls.create_call(
            s, team_id=team.id, spec=spec, now=now, join_deadline=now + timedelta(minutes=1)
        )
        phone = {"direction": "outbound", "from_number": FROM, "to_number": TO, "phone_number_id": None}
        s.add(PhoneCall(call_id=call.id, team_id=team.id, options={}, created_at=now, **phone))
        return call.id

    return await world.runtime.db.write(job)


def silence(path: Path) -> str:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(b"\x00" * 6400)
    return str(path)


@pytest.mark.parametrize("method", ["POST", "GET"])
async def test_a_connected_call_sends_every_subscribed_vocode_event_in_order(
    world: World, receiver: Receiver, tmp_path: Path, method: str
) -> None:
    team, secret = await vocode_team(world)
    receiver.secrets = {"team": secret}
    subscribed = [t for t in EVENT_TYPES if t != "event_phone_call_did_not_connect"]
    placed = await create(world, team, inline_agent(receiver.url, subscribed, method))
    agent_id = f"agt_{uuid.UUID(placed['agent']['id']).hex}"
    call_id = await phone_call(world, team, agent_id)
    await run_call(world, team, call_id, turns=(*TURNS, UNHEARD), recording=silence(tmp_path / "rec.wav"))

    # The agent has no LLM: its analysis fails at once, and call.analyzed still carries the transcript.
    hits = await receiver.wait_for(6)
    await asyncio.sleep(0.3)
    assert len(receiver.all()) == 6  # not the failed placement: did_not_connect is not subscribed
    for hit in hits:
        assert_signed_as(hit, method)
    conversation = str(uuid.UUID(call_id.removeprefix("call_")))
    view = (await world.client.get(f"/v1/calls/{call_id}", headers=team.auth())).json()
    assert view["phone"] == {"direction": "outbound", "from_number": FROM, "to_number": TO}
    assert [(t["role"], t["text"], t["interrupted"]) for t in view["transcript"]] == [
        (*TURNS[0], False), (*TURNS[1], False), ("agent", "", True),
    ]  # fmt: skip
    assert view["transcript"][2]["barge_ins"] == UNHEARD[2]["barge_ins"]
    started = [t["started_at"] for t in view["transcript"]]
    recording = f"/dialects/vocode/v1/calls/recording?id={conversation}"
    expected: list[dict[str, Any]] = [
        {"type": "event_phone_call_connected", "to_phone_number": TO, "from_phone_number": FROM},
        {"type": "event_message", "text": TURNS[0][1], "sender": "bot", "timestamp": _unix(started[0])},
        {"type": "event_message", "text": TURNS[1][1], "sender": "human", "timestamp": _unix(started[1])},
        {"type": "event_phone_call_ended", "conversation_minutes": round(view["duration_s"] / 60, 4)},
        {"type": "event_recording", "recording_url": recording},
        {"type": "event_transcript", "transcript": f"BOT: {TURNS[0][1]}\nHUMAN: {TURNS[1][1]}"},
    ]
    assert [h.payload for h in hits] == [
        as_sent(method, {"conversation_id": conversation, **e}) for e in expected
    ]
    # The recording URL leads to the recording through the dialect.
    r = await world.client.get(recording, headers=team.auth())
    assert r.status_code == 200 and r.headers["content-type"] == "audio/wav"


def _unix(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


async def envelopes(world: World, call_id: str) -> list[tuple[str, dict[str, Any]]]:
    async with world.runtime.db.read() as s:
        rows = await s.execute(
            select(WebhookEvent).where(WebhookEvent.call_id == call_id).order_by(WebhookEvent.seq)
        )
        return [(e.type, e.payload) for e in rows.scalars()]


def vocode(events: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any] | None]:
    """Each recorded envelope as the ``vocode`` format sends it (None: not a Vocode event)."""
    out: list[dict[str, Any] | None] = []
    for type_, envelope in events:
        mapped = event_type(type_, envelope)
        out.append(None if mapped is None else json.loads(render(mapped, envelope)))
    return out


async def ended_call(world: World, team: Team, path: list[CallStatus], reason: EndReason) -> str:
    """A phone call moved along ``path`` and ended for ``reason`` by the domain's own transitions."""
    now = utcnow()

    async def job(s: Any) -> str:
        spec = calls.NewCall(
            agent_id=team.agent_id, transport="pstn", mode="audio", variables={}, metadata={}, kind="phone"
        )
        call = await calls.create_call(
            s, team_id=team.id, spec=spec, now=now, join_deadline=now + timedelta(minutes=1)
        )
        phone = {"direction": "outbound", "from_number": FROM, "to_number": TO, "phone_number_id": None}
        s.add(PhoneCall(call_id=call.id, team_id=team.id, options={}, created_at=now, **phone))
        for to in path:
            await calls.transition(s, call=call, to=to, now=now)
        end = now + timedelta(seconds=90)
        await calls.transition(s, call=call, to=terminal_status(reason), reason=reason, now=end)
        return call.id

    return await world.runtime.db.write(job)


async def test_the_mapping_on_real_envelopes(world: World) -> None:
    team = await world.team("acme")
    live = [CallStatus.CONNECTING, CallStatus.IN_PROGRESS]
    cases = [
        # (path before the end, end reason) -> the Vocode event of the end
        (live, EndReason.CALLER_HANGUP, {"type": "event_phone_call_ended", "conversation_minutes": 1.5}),
        (live, EndReason.SERVER_ERROR, {"type": "event_phone_call_ended", "conversation_minutes": 1.5}),
        (
            [CallStatus.CONNECTING],
            EndReason.API_REQUEST,
            {"type": "event_phone_call_did_not_connect", "telephony_status": "canceled"},
        ),
        (
            [],
            EndReason.JOIN_DEADLINE_MISSED,
            {"type": "event_phone_call_did_not_connect", "telephony_status": "no-answer"},
        ),
        (
            [CallStatus.CONNECTING],
            EndReason.BUSY,
            {"type": "event_phone_call_did_not_connect", "telephony_status": "busy"},
        ),
        (
            [CallStatus.CONNECTING],
            EndReason.NO_ANSWER,
            {"type": "event_phone_call_did_not_connect", "telephony_status": "no-answer"},
        ),
        (
            [CallStatus.CONNECTING],
            EndReason.DECLINED,
            {"type": "event_phone_call_did_not_connect", "telephony_status": "failed"},
        ),
        (
            [],
            EndReason.TELEPHONY_UNAVAILABLE,
            {"type": "event_phone_call_did_not_connect", "telephony_status": "failed"},
        ),
    ]
    for path, reason, end in cases:
        call_id = await ended_call(world, team, path, reason)
        conversation = str(uuid.UUID(call_id.removeprefix("call_")))
        sent = vocode(await envelopes(world, call_id))
        connected = {
            "type": "event_phone_call_connected",
            "conversation_id": conversation,
            "to_phone_number": TO,
            "from_phone_number": FROM,
        }
        before: list[dict[str, Any] | None] = [None]  # call.created has no Vocode event
        if CallStatus.IN_PROGRESS in path:
            before.append(connected)
        assert sent == [*before, {"conversation_id": conversation, **end}], (reason, sent)


async def test_turns_recordings_and_analysis_map_and_other_events_do_not(world: World) -> None:
    team = await world.team("acme")
    r = await world.client.post("/v1/web-calls", json={"agent_id": team.agent_id}, headers=team.auth())
    call_id = r.json()["id"]
    await run_call(world, team, call_id, turns=TURNS, recording="/tmp/none.wav")
    async with asyncio.timeout(15):  # the agent has no LLM: its analysis fails at once
        while len(events := await envelopes(world, call_id)) < 7:
            await asyncio.sleep(0.05)
    assert [t for t, _ in events] == [
        "call.created",
        "call.started",
        "transcript.final",
        "transcript.final",
        "call.ended",
        "call.recording.available",
        "call.analyzed",
    ]
    message = events[2][1]
    assert event_type("transcript.final", message) == "event_message"
    assert json.loads(render("event_message", message)) == {
        "type": "event_message",
        "conversation_id": str(uuid.UUID(call_id.removeprefix("call_"))),
        "text": TURNS[0][1],
        "sender": "bot",
        "timestamp": _unix(message["data"]["started_at"]),
    }
    conversation = str(uuid.UUID(call_id.removeprefix("call_")))
    assert json.loads(render("event_recording", events[5][1])) == {
        "type": "event_recording",
        "conversation_id": conversation,
        "recording_url": f"/dialects/vocode/v1/calls/recording?id={conversation}",
    }
    analyzed = events[6][1]
    assert event_type("call.analyzed", analyzed) == "event_transcript"
    assert json.loads(render("event_transcript", analyzed))["transcript"] == (
        f"BOT: {TURNS[0][1]}\nHUMAN: {TURNS[1][1]}"
    )
    # A web call has no phone side: the connected event says so rather than inventing numbers.
    connected = json.loads(render("event_phone_call_connected", events[1][1]))
    assert connected["to_phone_number"] is None and connected["from_phone_number"] is None
    # callgate events Vocode has no word for.
    assert event_type("call.created", events[0][1]) is None
    assert event_type("transcript.partial", message) is None
