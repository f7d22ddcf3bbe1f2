"""The Voxworks dialect, driven as the seed documents it; answers validated with the vendor's OpenAPI."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.requests import Request

from callgate.api.dialects.voxworks import routes as voxworks
from callgate.auth.keys import KeyType
from callgate.domain import calls
from callgate.domain.lifecycle import EndReason
from callgate.errors import CallgateError, ConcurrencyLimited
from callgate.store.models import Call
from tests.dialects.fixtures import flow_agent
from tests.dialects.seed_openapi import assert_component, assert_seed_response
from tests.support.live import LiveServer
from tests.support.sip_client import Creds, SipClient
from tests.support.world import Team, World

CREATE = "/dialects/voxworks/api/v1/create-web-call"
CREATE_SEED = "/api/v1/create-web-call"
RESULT = "/dialects/voxworks/api/v1/get-call-result/{}"


async def create(world: World, team: Team, body: Any, key: str | None = None) -> Any:
    return await world.client.post(CREATE, json=body, headers=team.auth(key))


def assert_error(response: Any, status: int, message: str | None = None) -> dict[str, Any]:
    body = assert_seed_response("voxworks", CREATE_SEED, "post", response)
    assert response.status_code == status
    assert body["success"] is False and isinstance(body["message"], str) and body["message"]
    if message is not None:
        assert body["message"] == message
    return dict(body)


async def stored_call(world: World, call_id: str) -> Call:
    async with world.runtime.db.read() as s:
        call = await calls.get_call_any_team(s, call_id=call_id)
    assert call is not None
    return call


async def test_anonymous_visitor_gets_sip_credentials_and_a_contact(world: World) -> None:
    team = await world.team("acme")
    r = await create(world, team, {"script_id": team.agent_id})
    body = assert_seed_response("voxworks", CREATE_SEED, "post", r)
    assert r.status_code == 201
    assert body["success"] is True and body["status"] == "scheduled"
    assert body["script_id"] == team.agent_id and body["did"] == "web"
    assert body["ws_url"] == "ws://testserver/sip" and body["sip_domain"] == "testserver"
    assert body["target"].startswith("sip:") and body["headers"] == {"X-Callgate-Call-Id": body["call_id"]}
    assert r.headers["X-RateLimit-Limit"] == "100" and r.headers["X-RateLimit-Remaining"] == "99"

    # The visitor became a contact of the team, readable natively.
    contact = await world.client.get(f"/v1/contacts/{body['contact_id']}", headers=team.auth())
    assert contact.status_code == 200, contact.text

    # Only digest hashes are stored, and they verify the password that was handed out.
    call = await stored_call(world, body["call_id"])
    assert call.dialect == "voxworks" and call.transport == "sip" and call.contact_id == body["contact_id"]
    assert call.sip_auth is not None and body["sip_password"] not in json.dumps(call.sip_auth)
    a1 = f"{body['sip_username']}:{body['sip_domain']}:{body['sip_password']}".encode()
    assert call.sip_auth["ha1_md5"] == hashlib.md5(a1, usedforsecurity=False).hexdigest()
    assert call.sip_auth["ha1_sha256"] == hashlib.sha256(a1).hexdigest()


async def test_contact_did_identity_and_objects_are_kept(world: World) -> None:
    team = await world.team("acme")
    contact = (await world.client.post("/v1/contacts", json={"name": "Ada"}, headers=team.auth())).json()
    objects = {"order": {"id": "A-17", "items": [1, 2]}, "account.plan": {"tier": "gold"}}
    request = {
        "script_id": team.agent_id,
        "contact_id": contact["id"],
        "did": "sales",
        "participant_identity": "visitor-42",
        "objects": objects,
        "unknown_future_field": True,
    }
    r = await create(world, team, request)
    body = assert_seed_response("voxworks", CREATE_SEED, "post", r)
    assert body["contact_id"] == contact["id"] and body["did"] == "sales"
    native = (await world.client.get(f"/v1/calls/{body['call_id']}", headers=team.auth())).json()
    assert native["metadata"] == {"did": "sales", "objects": objects, "participant_identity": "visitor-42"}
    assert native["contact_id"] == contact["id"] and native["transport"] == "sip"


@pytest.mark.parametrize(
    "request_body",
    [
        {},
        {"script_id": ""},
        {"script_id": 7},
        {"script_id": "x", "objects": {"order": "not an object"}},
        {"script_id": "x", "objects": {"bad type!": {}}},
        {"script_id": "x", "objects": {"big": {"blob": "x" * 20_000}}},
        {"script_id": "x", "contact_id": ["c"]},
        {"script_id": "agt_\x00"},
        {"script_id": "x", "participant_identity": "A\x00"},
        {"script_id": "x", "objects": {"order": {"note": "\x00"}}},
        ["script_id"],
    ],
)
async def test_missing_or_invalid_data_is_400(world: World, request_body: Any) -> None:
    team = await world.team("acme")
    assert_error(await create(world, team, request_body), 400)


async def test_malformed_json_is_400(world: World) -> None:
    team = await world.team("acme")
    r = await world.client.post(
        CREATE, content=b"{not json", headers={**team.auth(), "content-type": "application/json"}
    )
    assert_error(r, 400)


@pytest.mark.parametrize(
    "auth", [None, "Bearer", "Bearer cg_sk_nope", "Basic abc", "Bearer cg_sk_" + "a" * 44]
)
async def test_bad_authorization_is_401_invalid_api_key(world: World, auth: str | None) -> None:
    team = await world.team("acme")
    headers = {"Authorization": auth} if auth else {}
    r = await world.client.post(CREATE, json={"script_id": team.agent_id}, headers=headers)
    assert_error(r, 401, "Invalid API key")


async def test_browser_keys_are_not_voxworks_keys(world: World) -> None:
    team = await world.team("acme")
    shared = await team.key(KeyType.SHARED, agent_ids=[team.agent_id])
    assert_error(await create(world, team, {"script_id": team.agent_id}, shared), 401, "Invalid API key")


async def test_unknown_or_foreign_script_and_contact_are_404(world: World) -> None:
    acme, other = await world.team("acme"), await world.team("other")
    foreign_contact = (await world.client.post("/v1/contacts", json={}, headers=other.auth())).json()["id"]
    assert_error(await create(world, acme, {"script_id": "agt_missing"}), 404, "Script not found")
    assert_error(await create(world, acme, {"script_id": other.agent_id}), 404, "Script not found")
    r = await create(world, acme, {"script_id": acme.agent_id, "contact_id": foreign_contact})
    assert_error(r, 404, "Contact not found")
    # Nothing was created for the refused requests.
    assert (await world.client.get("/v1/calls", headers=acme.auth())).json()["data"] == []


async def test_rate_limit_is_429_with_retry_after_and_x_ratelimit(world: World) -> None:
    team = await world.team("acme")
    key = await team.key(KeyType.SECRET, rate_limit="2/minute")
    for remaining in ("1", "0"):
        r = await create(world, team, {"script_id": team.agent_id}, key)
        assert r.status_code == 201 and r.headers["X-RateLimit-Remaining"] == remaining
    r = await create(world, team, {"script_id": team.agent_id}, key)
    body = assert_error(r, 429, "Rate limit exceeded")
    assert body == {"success": False, "message": "Rate limit exceeded"}
    assert 1 <= int(r.headers["Retry-After"]) <= 60
    assert r.headers["X-RateLimit-Limit"] == "2" and r.headers["X-RateLimit-Remaining"] == "0"


def test_internal_errors_are_the_seed_500() -> None:
    request = Request({"type": "http", "method": "POST", "path": CREATE, "headers": [], "query_string": b""})
    r = voxworks.render(request, CallgateError("database exploded: secret detail"))
    assert r.status_code == 500
    body = json.loads(bytes(r.body))
    assert body == {"success": False, "message": "Internal server error"}
    assert_component("voxworks", "ErrorResponse", body)
    busy = voxworks.render(request, ConcurrencyLimited("the team already has 20 live calls"))
    assert busy.status_code == 429 and busy.headers["Retry-After"] == "5"


async def test_call_result_reads_what_happened(world: World) -> None:
    team = await world.team("acme")
    agent_id = await flow_agent(world, team)
    created = (await create(world, team, {"script_id": agent_id, "objects": {"order": {"id": 1}}})).json()
    call_id = created["call_id"]
    now = world.runtime.clock.now()

    async def play(s: Any) -> None:
        await calls.add_turn(s, call_id=call_id, fields=_turn("agent", "Hello, Maple Street clinic.", now))
        await calls.add_turn(s, call_id=call_id, fields=_turn("user", "I need an appointment.", now))
        # A reply the caller cut off before hearing any of it: not in Voxworks' transcript.
        await calls.add_turn(s, call_id=call_id, fields=_turn("agent", "", now) | {"interrupted": True})
        await calls.end_call(s, team_id=team.id, call_id=call_id, reason=EndReason.API_REQUEST, now=now)

    await world.runtime.db.write(play)
    r = await world.client.get(RESULT.format(call_id), headers=team.auth())
    assert r.status_code == 200, r.text
    assert r.headers["X-RateLimit-Limit"] == "100"
    body = r.json()
    assert body["success"] is True
    result = body["call"]
    assert result["call_id"] == call_id and result["status"] == "completed"
    assert result["contact_id"] == created["contact_id"] and result["script_id"] == agent_id
    assert result["transcript"] == "Agent: Hello, Maple Street clinic.\nUser: I need an appointment."
    assert result["objects"] == {"order": {"id": 1}} and result["recording_url"] is None
    assert result["end_reason"] == "api_request"


async def test_call_result_of_another_team_is_404(world: World) -> None:
    acme, other = await world.team("acme"), await world.team("other")
    call_id = (await create(world, other, {"script_id": other.agent_id})).json()["call_id"]
    for path in (RESULT.format(call_id), RESULT.format("call_missing"), RESULT.format("call%00")):
        r = await world.client.get(path, headers=acme.auth())
        assert r.status_code == 404 and r.json() == {"success": False, "message": "Call not found"}
    r = await world.client.get(RESULT.format(call_id), headers={"Authorization": "Bearer nope"})
    assert r.status_code == 401 and r.json() == {"success": False, "message": "Invalid API key"}


def _turn(role: str, text: str, at: Any) -> dict[str, Any]:
    return {"role": role, "text": text, "interrupted": False, "started_at": at, "ended_at": at}


@settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    body=st.one_of(
        st.dictionaries(
            st.sampled_from(["script_id", "contact_id", "did", "participant_identity", "objects", "x"]),
            st.recursive(
                st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8), c, max_size=3),
                max_leaves=6,
            ),
        ),
        st.binary(max_size=40),
    )
)
async def test_no_body_gets_a_5xx(world: World, body: Any) -> None:
    team = await world.team("acme")
    if isinstance(body, bytes):
        r = await world.client.post(
            CREATE, content=body, headers={**team.auth(), "content-type": "application/json"}
        )
    else:
        r = await create(world, team, body)
    assert r.status_code in (201, 400, 404), r.text
    assert_seed_response("voxworks", CREATE_SEED, "post", r)


async def test_softphone_registers_with_the_returned_credentials(live: LiveServer) -> None:
    """The credentials work on callgate's SIP-over-WebSocket endpoint, as a browser softphone uses them."""
    team = await live.world.team("acme")
    agent_id = await flow_agent(live.world, team)
    r = await live.world.client.post(CREATE, json={"script_id": agent_id}, headers=team.auth())
    body = assert_seed_response("voxworks", CREATE_SEED, "post", r)
    creds = Creds(body["sip_username"], body["sip_password"], body["sip_domain"])
    async with SipClient(body["ws_url"], creds) as client:
        assert (await client.register(expires=60)).code == 200
    wrong = Creds(body["sip_username"], "not-the-password", body["sip_domain"])
    async with SipClient(body["ws_url"], wrong) as client:
        assert (await client.register(expires=60)).code in (401, 403)
    result = (await live.world.client.get(RESULT.format(body["call_id"]), headers=team.auth())).json()
    assert result["call"]["status"] == "scheduled"  # registering alone does not join the call
