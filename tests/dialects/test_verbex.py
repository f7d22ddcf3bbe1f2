"""The Verbex public-link dialect, validated with the vendor's OpenAPI, and a call joined with the
returned ``access_token`` against a real server."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
import websockets
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from callgate.auth.keys import KeyType
from callgate.domain.keys import revoke_key
from callgate.store.models import ApiKey
from tests.dialects.fixtures import agent_says, flow_agent, next_json, rtvi
from tests.dialects.seed_openapi import assert_seed_response
from tests.support.live import LiveServer
from tests.support.world import World

CREATE = "/dialects/verbex/v1/calls/public/create-web-call"
SEED_PATH = "/v1/calls/public/create-web-call"
SOCKET = "/dialects/verbex/v1/calls/web-call/ws?access_token={}"


async def create(client: httpx.AsyncClient, **params: str) -> httpx.Response:
    return await client.get(CREATE, params=params)


def seed_body(r: httpx.Response, status: int) -> Any:
    body = assert_seed_response("verbex", SEED_PATH, "get", r)
    assert r.status_code == status
    return body


async def test_shared_link_creates_a_call_token(world: World) -> None:
    team = await world.team("acme")
    key = await team.key(KeyType.SHARED, agent_ids=[team.agent_id])
    r = await create(world.client, ai_agent_id=team.agent_id, shared_key=key)
    body = seed_body(r, 201)
    assert set(body) == {"access_token"} and body["access_token"].count(".") == 2
    assert r.headers["access-control-allow-origin"] == "*"
    page = (await world.client.get("/v1/calls", headers=team.auth())).json()["data"]
    assert len(page) == 1 and page[0]["transport"] == "websocket" and page[0]["status"] == "created"


@pytest.mark.parametrize(
    ("params", "missing"),
    [
        ({}, {"ai_agent_id", "shared_key"}),
        ({"ai_agent_id": "agt_1"}, {"shared_key"}),
        ({"shared_key": "cg_sh_x"}, {"ai_agent_id"}),
        ({"ai_agent_id": "", "shared_key": "cg_sh_x"}, {"ai_agent_id"}),
        ({"ai_agent_id": "a" * 65, "shared_key": "k"}, {"ai_agent_id"}),
    ],
)
async def test_missing_or_malformed_parameters_are_422(
    world: World, params: dict[str, str], missing: set[str]
) -> None:
    body = seed_body(await create(world.client, **params), 422)
    assert {tuple(d["loc"]) for d in body["detail"]} == {("query", name) for name in missing}
    assert all(d["msg"] and d["type"] for d in body["detail"])


async def test_bad_keys_are_401(world: World) -> None:
    acme, other = await world.team("acme"), await world.team("other")
    shared = await acme.key(KeyType.SHARED, agent_ids=[acme.agent_id])
    other_shared = await other.key(KeyType.SHARED, agent_ids=[other.agent_id])
    publishable = await acme.key(KeyType.PUBLISHABLE, allowed_origins=["https://a.example"])
    cases = [
        (acme.agent_id, "cg_sh_nope"),
        (acme.agent_id, acme.secret),  # a secret key must never travel in a URL
        (acme.agent_id, publishable),
        (acme.agent_id, other_shared),  # another team's link
        (other.agent_id, shared),  # another team's agent with our link
        ("agt_missing", shared),
        ("agt_\x00", shared),
        (acme.agent_id, "cg_sh_\x00"),
    ]
    for agent_id, key in cases:
        body = seed_body(await create(world.client, ai_agent_id=agent_id, shared_key=key), 401)
        assert body["error"] == "unauthorized" and body["message"]
    assert (await world.client.get("/v1/calls", headers=acme.auth())).json()["data"] == []


async def test_a_revoked_link_stops_working(world: World) -> None:
    team = await world.team("acme")
    key = await team.key(KeyType.SHARED, agent_ids=[team.agent_id])
    assert (await create(world.client, ai_agent_id=team.agent_id, shared_key=key)).status_code == 201
    async with world.runtime.db.read() as s:
        key_id = (await s.execute(select(ApiKey.id).where(ApiKey.type == "shared"))).scalar_one()
    now = world.runtime.clock.now()
    await world.runtime.db.write(lambda s: revoke_key(s, team_id=team.id, key_id=key_id, now=now))
    world.runtime.keys.forget()
    seed_body(await create(world.client, ai_agent_id=team.agent_id, shared_key=key), 401)


async def test_an_origin_locked_link_only_works_from_its_pages(world: World) -> None:
    team = await world.team("acme")
    key = await team.key(KeyType.SHARED, agent_ids=[team.agent_id], allowed_origins=["https://shop.example"])
    params = {"ai_agent_id": team.agent_id, "shared_key": key}
    ok = await world.client.get(CREATE, params=params, headers={"Origin": "https://shop.example"})
    assert ok.status_code == 201
    for hdrs in ({"Origin": "https://evil.example"}, {}):
        body = seed_body(await world.client.get(CREATE, params=params, headers=hdrs), 401)
        assert body["error"] == "origin_not_allowed"


async def test_rate_limited_link(world: World) -> None:
    team = await world.team("acme")
    key = await team.key(KeyType.SHARED, agent_ids=[team.agent_id], rate_limit="1/minute")
    assert (await create(world.client, ai_agent_id=team.agent_id, shared_key=key)).status_code == 201
    r = await create(world.client, ai_agent_id=team.agent_id, shared_key=key)
    assert r.status_code == 429 and r.json()["error"] == "rate_limited"
    assert 1 <= int(r.headers["Retry-After"]) <= 60


async def test_unknown_method_and_route_speak_fastapi(world: World) -> None:
    r = await world.client.post(CREATE)
    assert r.status_code == 405 and r.json() == {"detail": "Method Not Allowed"}
    r = await world.client.get("/dialects/verbex/v1/nothing")
    assert r.status_code == 404 and r.json() == {"detail": "Not Found"}


async def test_access_token_joins_the_call(live: LiveServer) -> None:
    team = await live.world.team("acme")
    agent_id = await flow_agent(live.world, team)
    key = await team.key(KeyType.SHARED, agent_ids=[agent_id])
    token = (await create(live.world.client, ai_agent_id=agent_id, shared_key=key)).json()["access_token"]
    url = live.url.replace("http", "ws", 1) + SOCKET.format(token)
    async with websockets.connect(url) as ws:
        await ws.send(rtvi("client-ready", {"version": "1.0.0", "mode": "text"}))
        ready = await next_json(ws, {"type": "bot-ready"})
        call_id = ready["data"]["call_id"]
        assert "Maple Street" in await agent_says(ws)
        await ws.send(rtvi("send-text", {"content": "What are your opening hours?"}))
        assert await agent_says(ws)
        await ws.send(rtvi("disconnect-bot"))
        await next_json(ws, {"type": "server-message"})
    native = (await live.world.client.get(f"/v1/calls/{call_id}", headers=team.auth())).json()
    assert native["status"] == "ended" and native["agent_id"] == agent_id
    assert [t["role"] for t in native["transcript"]][:2] == ["agent", "user"]

    # The token was single-use; a forged one is refused with the documented close codes.
    for bad, code in ((token, 4409), ("not-a-token", 4401)):
        async with websockets.connect(live.url.replace("http", "ws", 1) + SOCKET.format(bad)) as again:
            with pytest.raises(websockets.ConnectionClosed):
                await asyncio.wait_for(again.recv(), 10)
            assert again.close_code == code


@settings(
    max_examples=50,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(params=st.dictionaries(st.sampled_from(["ai_agent_id", "shared_key", "x"]), st.text(max_size=80)))
async def test_no_query_gets_a_5xx(world: World, params: dict[str, str]) -> None:
    r = await create(world.client, **params)
    seed_body(r, r.status_code)
    assert r.status_code in (401, 422)
