"""The Vocode dialect: phone calls created, read, listed and ended as Vocode's API shows them, every
answer checked against the seed's Call schema, errors in FastAPI's ``{"detail": …}`` shape."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from callgate.auth.keys import KeyType
from callgate.clock import utcnow
from callgate.domain import calls
from callgate.domain.lifecycle import CallStatus
from callgate.domain.telephony import NO_TELEPHONY
from callgate.domain.vocode_agents import vocode_webhook
from callgate.store.models_telephony import PhoneCall, VocodeAgent
from tests.support.world import Team, World

BASE = "/dialects/vocode/v1/calls"
FROM, TO = "+14155550100", "+14155550199"
# A public address: webhook URLs pass the outbound guard when saved, and this needs no DNS.
HOOK_URL = "https://93.184.215.14/v"
UUID = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
OWNED = {"id": {"type": "string", "pattern": UUID}, "user_id": {"type": "string", "pattern": UUID}}
EVENTS = [
    "event_message",
    "event_action",
    "event_phone_call_connected",
    "event_phone_call_ended",
    "event_phone_call_did_not_connect",
    "event_transcript",
    "event_recording",
    "event_human_detection",
]

# The seed's Call object (003_*.txt), as a JSON Schema: required fields, types and enumerations.
AGENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["id", "user_id", "prompt", "actions", "voice"],
    "properties": {
        **OWNED,
        "prompt": {"type": "string"},
        "actions": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["id", "user_id", "type"],
                "properties": {
                    **OWNED,
                    "type": {"type": "string", "pattern": "^action_"},
                    "config": {"type": "object"},
                },
            },
        },
        "voice": {
            "type": "object",
            "required": ["id", "user_id", "type"],
            "properties": {**OWNED, "type": {"type": "string", "pattern": "^voice_"}},
        },
        "initial_message": {"type": "string"},
        "webhook": {
            "type": "object",
            "required": ["id", "user_id", "subscriptions", "url"],
            "properties": {
                **OWNED,
                "subscriptions": {"type": "array", "items": {"enum": EVENTS}},
                "url": {"type": "string"},
                "method": {"enum": ["GET", "POST"]},
            },
        },
    },
}
CALL_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["id", "user_id", "to_number", "from_number", "agent"],
    "properties": {
        **OWNED,
        "status": {"enum": ["not_started", "in_progress", "error", "ended"]},
        "error_message": {"type": "string"},
        "recording_available": {"type": "boolean"},
        "transcript": {"type": "string"},
        "to_number": {"type": "string"},
        "from_number": {"type": "string"},
        "agent": AGENT_SCHEMA,
    },
}
NORMALIZED_CALL = {
    **CALL_SCHEMA,
    "properties": {**CALL_SCHEMA["properties"], "agent": {"type": "string", "pattern": UUID}},
}


def seed_call(r: httpx.Response) -> dict[str, Any]:
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    Draft202012Validator(CALL_SCHEMA).validate(body)
    return body


def detail(r: httpx.Response, status: int) -> Any:
    """FastAPI's error body: ``{"detail": …}`` and nothing else."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json", r.headers
    body = r.json()
    assert set(body) == {"detail"}, body
    return body["detail"]


def locs(r: httpx.Response) -> set[tuple[Any, ...]]:
    entries = detail(r, 422)
    assert all(set(e) == {"loc", "msg", "type"} for e in entries), entries
    return {tuple(e["loc"]) for e in entries}


async def own_number(world: World, team: Team, number: str = FROM) -> None:
    r = await world.client.post("/v1/phone-numbers", json={"number": number}, headers=team.auth())
    assert r.status_code == 201, r.text


async def create(world: World, team: Team, body: dict[str, Any], key: str | None = None) -> httpx.Response:
    return await world.client.post(f"{BASE}/create", json=body, headers=team.auth(key))


INLINE = {
    "prompt": "You call {{customer}} to confirm an appointment.",
    "actions": [
        {"type": "action_end_conversation", "config": {}},
        {"type": "action_transfer_call", "config": {"phone_number": "+14155550111"}},
    ],
    "voice": {"type": "voice_azure", "voice_name": "en-US-JennyNeural", "pitch": 0, "rate": 15},
    "initial_message": "Hi, this is the clinic.",
    "webhook": {
        "subscriptions": ["event_phone_call_ended", "event_transcript"],
        "url": HOOK_URL,
    },
}


async def test_call_with_an_agent_id_is_kept_and_reports_no_telephony(world: World) -> None:
    team = await world.team("acme")
    await own_number(world, team)
    agent_uuid = str(uuid.UUID(team.agent_id.removeprefix("agt_")))
    body = seed_call(await create(world, team, {"from_number": FROM, "to_number": TO, "agent": agent_uuid}))
    assert body["status"] == "error" and body["error_message"] == NO_TELEPHONY
    assert (body["from_number"], body["to_number"], body["agent_phone_number"]) == (FROM, TO, FROM)
    assert body["recording_available"] is False and body["transcript"] == ""
    agent = body["agent"]
    assert agent["id"] == agent_uuid and agent["prompt"] == "You are a helpful assistant for {{company}}."
    assert [a["type"] for a in agent["actions"]] == ["action_end_conversation"]
    assert agent["voice"]["type"] == "voice_base" and agent["user_id"] == body["user_id"]

    # The same record, natively and through the dialect.
    call_id = f"call_{uuid.UUID(body['id']).hex}"
    native = (await world.client.get(f"/v1/calls/{call_id}", headers=team.auth())).json()
    assert (native["kind"], native["transport"], native["status"]) == ("phone", "pstn", "failed")
    assert native["end_reason"] == "telephony_unavailable"
    again = seed_call(await world.client.get(BASE, params={"id": body["id"]}, headers=team.auth()))
    assert again == body
    assert (
        seed_call(await world.client.get(f"{BASE}/", params={"id": body["id"]}, headers=team.auth())) == body
    )
    # The agent may also be named by its callgate id.
    by_native_id = seed_call(
        await create(world, team, {"from_number": FROM, "to_number": TO, "agent": team.agent_id})
    )
    assert by_native_id["agent"]["id"] == agent_uuid


async def test_inline_agent_becomes_a_callgate_agent_with_its_vocode_objects(world: World) -> None:
    team = await world.team("acme")
    await own_number(world, team)
    request = {"from_number": FROM, "to_number": TO, "agent": INLINE, "context": {"customer": "Ada"}}
    body = seed_call(await create(world, team, request))
    agent = body["agent"]
    assert agent["prompt"] == INLINE["prompt"] and agent["initial_message"] == INLINE["initial_message"]
    assert [(a["type"], a["config"]) for a in agent["actions"]] == [
        ("action_end_conversation", {}),
        ("action_transfer_call", {"phone_number": "+14155550111"}),
    ]
    assert agent["voice"] | {"id": "x"} == {"id": "x", "user_id": body["user_id"], **INLINE["voice"]}
    hook = agent["webhook"]
    assert (hook["url"], hook["method"], hook["subscriptions"]) == (
        HOOK_URL,
        "POST",
        ["event_phone_call_ended", "event_transcript"],
    )
    assert body["context"] == {"customer": "Ada"}

    agent_id = f"agt_{uuid.UUID(agent['id']).hex}"
    native = (await world.client.get(f"/v1/agents/{agent_id}", headers=team.auth())).json()
    assert (native["prompt"], native["voice"], native["initial_message"]) == (
        INLINE["prompt"],
        "en-US-JennyNeural",
        INLINE["initial_message"],
    )
    call = (await world.client.get(f"/v1/calls/call_{uuid.UUID(body['id']).hex}", headers=team.auth())).json()
    assert call["variables"] == {"customer": "Ada"} and call["agent_id"] == agent_id
    # What webhook delivery reads for this agent.
    async with world.runtime.db.read() as s:
        stored = await vocode_webhook(s, agent_id=agent_id)
    assert stored == {
        "id": hook["id"],
        "url": hook["url"],
        "method": "POST",
        "subscriptions": hook["subscriptions"],
    }
    # The same agent, reused by id, shows the same objects.
    reused = seed_call(
        await create(world, team, {"from_number": FROM, "to_number": TO, "agent": agent["id"]})
    )
    assert reused["agent"] == agent


async def test_later_client_shapes_are_accepted_and_third_party_keys_not_kept(world: World) -> None:
    team = await world.team("acme")
    await own_number(world, team)
    voice = {"type": "voice_eleven_labs", "voice_id": "EXAVITQu", "api_key": "sk-elevenlabs-secret"}
    agent = {
        "name": "Reminder",
        "prompt": {"content": "Remind the caller."},
        "voice": voice,
        "language": "en",
    }
    request = {"from_number": FROM, "to_number": TO, "agent": agent, "hipaa_compliant": True, "unknown": 1}
    body = seed_call(await create(world, team, request))
    assert body["agent"]["prompt"] == "Remind the caller." and body["hipaa_compliant"] is True
    assert (
        body["agent"]["voice"]["voice_id"] == "EXAVITQu" and body["agent"]["voice"]["api_key"] == "[redacted]"
    )
    async with world.runtime.db.read() as s:
        row = await s.get(VocodeAgent, f"agt_{uuid.UUID(body['agent']['id']).hex}")
    assert row is not None and "sk-elevenlabs-secret" not in json.dumps(row.voice)


async def phone_call_in(world: World, team: Team, path: list[CallStatus]) -> str:
    """A phone call moved along ``path`` with the domain's own transitions (as telephony will)."""
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
        return str(uuid.UUID(call.id.removeprefix("call_")))

    return await world.runtime.db.write(job)


async def test_statuses_map_and_end_call_hangs_up(world: World) -> None:
    team = await world.team("acme")
    created = await phone_call_in(world, team, [])
    ringing = await phone_call_in(world, team, [CallStatus.CONNECTING])
    talking = await phone_call_in(world, team, [CallStatus.CONNECTING, CallStatus.IN_PROGRESS])
    for vid, status in ((created, "not_started"), (ringing, "in_progress"), (talking, "in_progress")):
        body = seed_call(await world.client.get(BASE, params={"id": vid}, headers=team.auth()))
        assert body["status"] == status and "error_message" not in body
    ended = seed_call(await world.client.post(f"{BASE}/end", params={"id": talking}, headers=team.auth()))
    assert ended["status"] == "ended" and "end_time" in ended and "error_message" not in ended
    native = (await world.client.get(f"/v1/calls/call_{uuid.UUID(talking).hex}", headers=team.auth())).json()
    assert native["end_reason"] == "api_request"
    # Ending it again: the call is over.
    assert "ended" in detail(
        await world.client.post(f"{BASE}/end", params={"id": talking}, headers=team.auth()), 409
    )


async def test_list_pages_through_phone_calls_only(world: World) -> None:
    team = await world.team("acme")
    await own_number(world, team)
    body = {"from_number": FROM, "to_number": TO, "agent": team.agent_id}
    made = [seed_call(await create(world, team, body))["id"] for _ in range(3)]
    await world.client.post("/v1/web-calls", json={"agent_id": team.agent_id}, headers=team.auth())
    r = await world.client.get(f"{BASE}/list", params={"page": 1, "size": 2}, headers=team.auth())
    assert r.status_code == 200, r.text
    page = r.json()
    assert {k: v for k, v in page.items() if k != "items"} == {
        "page": 1, "size": 2, "has_more": True, "total": 3, "total_is_estimated": False,
    }  # fmt: skip
    for item in page["items"]:
        Draft202012Validator(NORMALIZED_CALL).validate(item)
    second = (
        await world.client.get(f"{BASE}/list", params={"page": 2, "size": 2}, headers=team.auth())
    ).json()
    assert [i["id"] for i in page["items"] + second["items"]] == made and second["has_more"] is False
    newest = (
        await world.client.get(f"{BASE}/list", params={"sort_desc": "true"}, headers=team.auth())
    ).json()
    assert [i["id"] for i in newest["items"]] == made[::-1]
    assert locs(await world.client.get(f"{BASE}/list", params={"size": 0}, headers=team.auth())) == {
        ("query", "size")
    }


async def test_recording_is_404_until_there_is_one(world: World) -> None:
    team = await world.team("acme")
    vid = await phone_call_in(world, team, [])
    r = await world.client.get(f"{BASE}/recording", params={"id": vid}, headers=team.auth())
    assert detail(r, 404) == "Recording not available"


async def test_authentication_errors(world: World) -> None:
    team = await world.team("acme")
    body = {"from_number": FROM, "to_number": TO, "agent": team.agent_id}
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic abc"}):
        r = await world.client.post(f"{BASE}/create", json=body, headers=headers)
        assert isinstance(detail(r, 401), str) and r.headers["www-authenticate"] == "Bearer"
    publishable = await team.key(KeyType.PUBLISHABLE, allowed_origins=["https://shop.example"])
    assert "secret key" in detail(await create(world, team, body, publishable), 403)


async def test_numbers_agents_and_objects_that_are_not_yours(world: World) -> None:
    acme, other = await world.team("acme"), await world.team("other")
    await own_number(world, acme)
    await own_number(world, other, "+14155550177")
    r = await create(world, acme, {"from_number": "+14155550177", "to_number": TO, "agent": acme.agent_id})
    assert "+14155550177 is not one of your phone numbers" in detail(r, 400)
    r = await create(world, acme, {"from_number": "+14155550155", "to_number": TO, "agent": acme.agent_id})
    assert "not one of your phone numbers" in detail(r, 400)
    for agent in (other.agent_id, str(uuid.uuid4()), "not-an-id"):
        r = await create(world, acme, {"from_number": FROM, "to_number": TO, "agent": agent})
        assert detail(r, 404) == f"Agent {agent} not found"
    for field, value in (
        ("voice", str(uuid.uuid4())),
        ("webhook", str(uuid.uuid4())),
        ("actions", [str(uuid.uuid4())]),
    ):
        r = await create(
            world, acme, {"from_number": FROM, "to_number": TO, "agent": {**INLINE, field: value}}
        )
        assert "not found" in detail(r, 404)
    # Nothing was written by the refused requests.
    assert (await world.client.get(f"{BASE}/list", headers=acme.auth())).json()["total"] == 0

    vid = seed_call(
        await create(world, other, {"from_number": "+14155550177", "to_number": TO, "agent": other.agent_id})
    )["id"]
    assert (
        detail(await world.client.get(BASE, params={"id": vid}, headers=acme.auth()), 404) == "Call not found"
    )
    assert (
        detail(await world.client.post(f"{BASE}/end", params={"id": vid}, headers=acme.auth()), 404)
        == "Call not found"
    )
    assert (await world.client.get(f"{BASE}/list", headers=acme.auth())).json()["items"] == []


def with_agent(agent: Any, **more: Any) -> dict[str, Any]:
    return {"from_number": FROM, "to_number": TO, "agent": agent, **more}


BAD_WEBHOOK = {"url": "ftp://x", "subscriptions": ["nope"]}


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({}, {("body", "from_number"), ("body", "to_number"), ("body", "agent")}),
        ({"from_number": FROM, "to_number": "4155550199", "agent": "x"}, {("body", "to_number")}),
        (with_agent(None), {("body", "agent")}),
        (with_agent(7), {("body", "agent")}),
        (with_agent("a" * 65), {("body", "agent")}),
        (with_agent({"voice": INLINE["voice"]}), {("body", "agent", "prompt")}),
        (
            with_agent({**INLINE, "actions": [{"type": "action_transfer_call"}]}),
            {("body", "agent", "actions", 0)},
        ),
        (with_agent({**INLINE, "voice": {"type": "voice_azure"}}), {("body", "agent", "voice")}),
        (
            with_agent({**INLINE, "webhook": BAD_WEBHOOK}),
            {("body", "agent", "webhook", "url"), ("body", "agent", "webhook", "subscriptions", 0)},
        ),
        (with_agent("x", context={"bad name": "v"}), {("body", "context", "bad name", "[key]")}),
        # U+0000 cannot be stored by PostgreSQL: refused on every engine, never a failed write.
        (with_agent({**INLINE, "prompt": "hi\x00"}), {("body",)}),
        (with_agent("x", context={"name": "\x00"}), {("body",)}),
        ({"from_number": "+1415\x00", "to_number": TO, "agent": "x"}, {("body",)}),
    ],
)
async def test_invalid_bodies_are_422_with_fastapi_detail(
    world: World, body: dict[str, Any], expected: set[tuple[Any, ...]]
) -> None:
    team = await world.team("acme")
    assert expected <= locs(await create(world, team, body))


async def test_malformed_requests_in_vocode_shape(world: World) -> None:
    team = await world.team("acme")
    raw = {**team.auth(), "content-type": "application/json"}
    assert locs(await world.client.post(f"{BASE}/create", content=b"{not json", headers=raw)) == {("body",)}
    assert locs(await world.client.get(BASE, params={"id": "call_1"}, headers=team.auth())) == {
        ("query", "id")
    }
    assert locs(await world.client.get(BASE, headers=team.auth())) == {("query", "id")}
    assert (
        detail(await world.client.get(f"{BASE}/create", headers=team.auth()), 405)
        == "this route does not accept that method"
    )
    assert (
        detail(await world.client.get("/dialects/vocode/v1/nothing", headers=team.auth()), 404)
        == "no such route"
    )
    big = b'{"from_number": "' + b"1" * (world.runtime.settings.max_body_bytes + 10) + b'"}'
    assert "is over" in detail(await world.client.post(f"{BASE}/create", content=big, headers=raw), 413)


async def test_rate_limit_is_429_with_retry_after(world: World) -> None:
    team = await world.team("acme")
    key = await team.key(KeyType.SECRET, rate_limit="2/minute")
    for _ in range(2):
        await world.client.get(f"{BASE}/list", headers=team.auth(key))
    r = await world.client.get(f"{BASE}/list", headers=team.auth(key))
    assert isinstance(detail(r, 429), str) and int(r.headers["retry-after"]) > 0


@pytest.fixture
async def acme(world: World) -> Team:
    team = await world.team("acme")
    await own_number(world, team)
    return team


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.text(max_size=12)
    | st.sampled_from([FROM, TO, "voice_azure"]),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)
agent_values = json_values | st.fixed_dictionaries(
    {},
    optional={k: json_values for k in ("prompt", "voice", "actions", "webhook", "initial_message", "name")},
)


@settings(
    max_examples=120,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    body=st.fixed_dictionaries(
        {},
        optional={
            "from_number": json_values,
            "to_number": json_values,
            "agent": agent_values,
            "context": json_values,
        },
    )
)
async def test_no_create_body_gets_a_5xx(world: World, acme: Team, body: dict[str, Any]) -> None:
    r = await world.client.post(f"{BASE}/create", json=body, headers=acme.auth())
    assert r.status_code < 500, r.text
    if r.status_code != 200:
        detail(r, r.status_code)
