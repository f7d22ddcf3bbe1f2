"""The OneInbox dialect: origin-locked web-call tokens with LiveKit-style answers, the token verified by
LiveKit's own verifier, and a call joined with ``server_url`` + ``participant_token`` on a real server."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import httpx
import jwt
import pytest
import websockets
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from livekit.api import TokenVerifier

from callgate.auth import livekit
from callgate.auth.keys import KeyType
from tests.dialects.fixtures import agent_says, next_json, rtvi
from tests.support.live import LiveServer
from tests.support.world import Team, World

BASE = "/dialects/oneinbox/v1"
TOKEN = f"{BASE}/web-calls/token"
ORIGIN = "https://shop.example"
ANSWER = {"id", "agent_id", "type", "status", "room_name", "server_url", "participant_token", "created_at"}
GREETER = {
    "name": "greeter",
    "variables": {"customer_name": "there"},
    "flow": {
        "start": "greeting",
        "intents": [{"name": "bye", "keywords": ["bye", "goodbye"], "goto": "goodbye"}],
        "states": {
            "greeting": {"say": "Hello {{customer_name}}, how can I help?"},
            "goodbye": {"say": "Goodbye {{customer_name}}!", "end": True},
        },
    },
}


def error(r: httpx.Response, status: int, code: str) -> str:
    """OneInbox's error body: ``{"detail": {"code", "message"}}``; returns the message."""
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"detail"} and set(body["detail"]) == {"code", "message"}, body
    assert body["detail"]["code"] == code, body
    message: str = body["detail"]["message"]
    return message


def locs(r: httpx.Response) -> set[tuple[Any, ...]]:
    assert r.status_code == 422, r.text
    entries = r.json()["detail"]
    assert all(set(e) == {"loc", "msg", "type"} for e in entries), entries
    return {tuple(e["loc"]) for e in entries}


async def browser_key(team: Team, **kwargs: Any) -> dict[str, str]:
    key = await team.key(KeyType.PUBLISHABLE, allowed_origins=[ORIGIN], **kwargs)
    return {**team.auth(key), "Origin": ORIGIN}


async def test_publishable_key_gets_a_livekit_style_answer(world: World) -> None:
    team = await world.team("acme")
    request = {
        "agent_id": team.agent_id,
        "variables": {"company": "Globex"},
        "metadata": {"source": "homepage_widget"},
    }
    r = await world.client.post(TOKEN, json=request, headers=await browser_key(team))
    assert r.status_code == 201, r.text
    body = r.json()
    assert set(body) == ANSWER and r.headers["access-control-allow-origin"] == ORIGIN
    assert body["id"].startswith("call_") and body["agent_id"] == team.agent_id
    assert (body["type"], body["status"]) == ("web", "queued")
    assert body["room_name"] == "web-" + body["id"].removeprefix("call_")
    assert body["server_url"] == "ws://testserver/dialects/oneinbox"
    assert datetime.fromisoformat(body["created_at"]).tzinfo is not None

    native = (await world.client.get(f"/v1/calls/{body['id']}", headers=team.auth())).json()
    assert native["variables"] == {"company": "Globex"} and native["metadata"] == {
        "source": "homepage_widget"
    }
    assert (native["transport"], native["status"]) == ("websocket", "created")

    # A LiveKit access token, as LiveKit's own verifier sees it, bound to this call until its join deadline.
    claims = TokenVerifier(*livekit.credentials(world.runtime.signing_key)).verify(body["participant_token"])
    assert claims.video is not None and claims.video.room == body["room_name"] and claims.video.room_join
    assert claims.identity.startswith("caller-")
    raw = jwt.decode(body["participant_token"], options={"verify_signature": False})
    assert raw["iss"] == "callgate" and raw["callgate"]["call"] == body["id"]
    assert datetime.fromtimestamp(raw["exp"], UTC) == datetime.fromisoformat(native["join_deadline"]).replace(
        microsecond=0
    )
    with pytest.raises(jwt.InvalidSignatureError):
        TokenVerifier("callgate", "another-secret-" + "x" * 32).verify(body["participant_token"])


async def test_origin_lock_and_key_scope(world: World) -> None:
    team = await world.team("acme")
    headers = await browser_key(team)
    body = {"agent_id": team.agent_id}
    for origin in ("https://evil.example", None):
        hdrs = {k: v for k, v in headers.items() if k != "Origin"} | ({"Origin": origin} if origin else {})
        assert "origin" in error(
            await world.client.post(TOKEN, json=body, headers=hdrs), 403, "ORIGIN_NOT_ALLOWED"
        )
    preflight = await world.client.options(
        TOKEN, headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST"}
    )
    assert preflight.status_code == 204 and preflight.headers["access-control-allow-origin"] == ORIGIN
    # A publishable key only starts calls: the secret-key routes refuse it.
    assert error(await world.client.post(f"{BASE}/calls/web", json=body, headers=headers), 403, "FORBIDDEN")
    # A key limited to some agents, and another team's agent, find nothing else.
    other = await world.team("other")
    limited = await browser_key(team, agent_ids=[team.agent_id])
    for hdrs, agent in ((limited, other.agent_id), (headers, other.agent_id), (headers, "agt_missing")):
        error(await world.client.post(TOKEN, json={"agent_id": agent}, headers=hdrs), 404, "NOT_FOUND")
    assert (await world.client.get("/v1/calls", headers=team.auth())).json()["data"] == []


async def test_bad_requests_in_oneinbox_shape(world: World) -> None:
    team = await world.team("acme")
    headers = await browser_key(team)
    for key in ("oi_pk_live_abc", "cg_pk_short"):
        r = await world.client.post(
            TOKEN, json={"agent_id": team.agent_id}, headers={**headers, "Authorization": f"Bearer {key}"}
        )
        error(r, 401, "UNAUTHENTICATED")
        assert r.headers["www-authenticate"] == "Bearer"
    error(
        await world.client.post(TOKEN, json={"agent_id": team.agent_id}, headers={"Origin": ORIGIN}),
        401,
        "UNAUTHENTICATED",
    )
    assert locs(await world.client.post(TOKEN, json={}, headers=headers)) == {("body", "agent_id")}
    overrides = {"agent_id": team.agent_id, "overrides": {"llm": {"model": "gpt-4o"}}}
    assert locs(await world.client.post(TOKEN, json=overrides, headers=headers)) == {("body", "overrides")}
    assert locs(
        await world.client.post(
            TOKEN, json={"agent_id": team.agent_id, "variables": {"bad name": 1}}, headers=headers
        )
    )
    for nul in ({"agent_id": "agt_\x00"}, {"agent_id": team.agent_id, "metadata": {"k": ["v\x00"]}}):
        assert locs(await world.client.post(TOKEN, json=nul, headers=headers)) == {("body",)}
    error(await world.client.get(f"{BASE}/calls/call_%00", headers=team.auth()), 404, "NOT_FOUND")
    raw = {**headers, "content-type": "application/json"}
    assert locs(await world.client.post(TOKEN, content=b"{oops", headers=raw)) == {("body",)}
    big = b'{"agent_id": "' + b"a" * (world.runtime.settings.max_body_bytes + 1) + b'"}'
    error(await world.client.post(TOKEN, content=big, headers=raw), 413, "PAYLOAD_TOO_LARGE")
    error(await world.client.get(TOKEN, headers=headers), 405, "METHOD_NOT_ALLOWED")
    error(await world.client.get(f"{BASE}/nothing", headers=headers), 404, "NOT_FOUND")
    assert (await world.client.get("/v1/calls", headers=team.auth())).json()["data"] == []


async def test_rate_limited_key_is_429(world: World) -> None:
    team = await world.team("acme")
    headers = await browser_key(team, rate_limit="1/minute")
    assert (
        await world.client.post(TOKEN, json={"agent_id": team.agent_id}, headers=headers)
    ).status_code == 201
    r = await world.client.post(TOKEN, json={"agent_id": team.agent_id}, headers=headers)
    error(r, 429, "RATE_LIMITED")
    assert 1 <= int(r.headers["retry-after"]) <= 60


async def test_secret_key_routes_read_and_stop_the_call(world: World) -> None:
    team, other = await world.team("acme"), await world.team("other")
    r = await world.client.post(f"{BASE}/calls/web", json={"agent_id": team.agent_id}, headers=team.auth())
    assert r.status_code == 201 and set(r.json()) == ANSWER
    call_id = r.json()["id"]
    call = (await world.client.get(f"{BASE}/calls/{call_id}", headers=team.auth())).json()
    assert (call["id"], call["type"], call["status"], call["room_name"]) == (
        call_id,
        "web",
        "queued",
        r.json()["room_name"],
    )
    assert call["end_reason"] is None and call["messages"] == [] and call["metadata"] == {}
    stopped = (await world.client.post(f"{BASE}/calls/{call_id}/stop", headers=team.auth())).json()
    assert (stopped["status"], stopped["end_reason"]) == ("completed", "api_stop")
    again = await world.client.post(f"{BASE}/calls/{call_id}/stop", headers=team.auth())
    assert again.status_code == 200 and again.json() == stopped
    for path in (f"{BASE}/calls/{call_id}", f"{BASE}/calls/{call_id}/stop"):
        method = "GET" if path.endswith(call_id) else "POST"
        error(await world.client.request(method, path, headers=other.auth()), 404, "NOT_FOUND")


async def test_a_call_is_joined_with_server_url_and_participant_token(live: LiveServer) -> None:
    world = live.world
    team = await world.team("acme")
    r = await world.client.post("/v1/agents", json=GREETER, headers=team.auth())
    assert r.status_code == 201, r.text
    agent_id = r.json()["id"]
    request = {
        "agent_id": agent_id,
        "variables": {"customer_name": "Suman"},
        "metadata": {"page": "/pricing"},
    }
    answer = (await world.client.post(TOKEN, json=request, headers=await browser_key(team))).json()
    assert answer["server_url"] == live.url.replace("http://", "ws://") + "/dialects/oneinbox"
    url = f"{answer['server_url']}/rtc?access_token={answer['participant_token']}"

    async with websockets.connect(url) as ws:
        await ws.send(rtvi("client-ready", {"version": "1.0.0", "mode": "text"}))
        ready = await next_json(ws, {"type": "bot-ready"})
        assert ready["data"]["call_id"] == answer["id"]
        assert "Hello Suman" in await agent_says(ws)
        live_call = (await world.client.get(f"{BASE}/calls/{answer['id']}", headers=team.auth())).json()
        assert live_call["status"] == "in_progress" and live_call["started_at"]
        await ws.send(rtvi("send-text", {"content": "that's all, goodbye"}))
        goodbye = await next_json(ws, {"type": "bot-tts-text"})
        assert "Goodbye Suman" in goodbye["data"]["text"]
        ended = await next_json(ws, {"type": "server-message"})
        assert ended["data"] == {"type": "call-ended", "reason": "agent_ended"}
        with pytest.raises(websockets.ConnectionClosedOK):
            await asyncio.wait_for(next_json(ws, {"type": "never"}), 10)

    call = (await world.client.get(f"{BASE}/calls/{answer['id']}", headers=team.auth())).json()
    assert (call["status"], call["end_reason"], call["metadata"]) == (
        "completed",
        "agent_hangup",
        {"page": "/pricing"},
    )
    assert call["variables"] == {"customer_name": "Suman"}
    assert [m["role"] for m in call["messages"]][:3] == ["assistant", "user", "assistant"]
    assert call["transcript"].splitlines()[0] == "Agent: Hello Suman, how can I help?"

    # The token was single-use; a forged or native token is refused before any call is touched.
    codes = []
    native = (
        await world.client.post("/v1/web-calls", json={"agent_id": agent_id}, headers=team.auth())
    ).json()
    forged = jwt.encode(
        {**jwt.decode(answer["participant_token"], options={"verify_signature": False})}, "x" * 32
    )
    for token in (answer["participant_token"], forged, native["token"], ""):
        async with websockets.connect(f"{answer['server_url']}/rtc?access_token={token}") as ws:
            with pytest.raises(websockets.ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 5)
            codes.append(ws.close_code)
    assert codes == [4409, 4401, 4401, 4401]
    untouched = (await world.client.get(f"/v1/calls/{native['id']}", headers=team.auth())).json()
    assert untouched["status"] == "created"


async def test_a_token_for_another_transport_or_room_is_refused(world: World) -> None:
    now = world.runtime.clock.now()
    key = world.runtime.signing_key
    token = livekit.issue(
        signing_key=key, call_id="call_ab", team_id="t", transport="webrtc", now=now, expires_at=now
    )
    with pytest.raises(Exception, match=r"transport|expired"):
        await livekit.redeem(
            token, signing_key=key, now=now, transport="websocket", ledger=world.runtime.ledger
        )
    later = now.replace(year=now.year + 1)
    token = livekit.issue(
        signing_key=key, call_id="call_ab", team_id="t", transport="webrtc", now=now, expires_at=later
    )
    with pytest.raises(Exception, match="another transport"):
        await livekit.redeem(
            token, signing_key=key, now=now, transport="websocket", ledger=world.runtime.ledger
        )
    claims = jwt.decode(token, options={"verify_signature": False}) | {
        "video": {"room": "web-other", "roomJoin": True}
    }
    moved = jwt.encode(claims, livekit.credentials(key)[1], algorithm="HS256")
    with pytest.raises(Exception, match="room"):
        livekit.decode(moved, signing_key=key, now=now)
    with pytest.raises(Exception, match="expired"):
        livekit.decode(token, signing_key=key, now=later)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)


@pytest.fixture
async def acme(world: World) -> tuple[Team, dict[str, str]]:
    team = await world.team("acme")
    return team, await browser_key(team, rate_limit="1000/second")


@settings(
    max_examples=80,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    body=json_values
    | st.fixed_dictionaries(
        {}, optional={k: json_values for k in ("agent_id", "variables", "metadata", "overrides")}
    )
)
async def test_no_token_body_gets_a_5xx(world: World, acme: tuple[Team, dict[str, str]], body: Any) -> None:
    r = await world.client.post(TOKEN, json=body, headers=acme[1])
    assert r.status_code < 500, r.text
    assert r.status_code == 422 or "detail" in r.json()
