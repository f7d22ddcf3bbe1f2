"""Per-key request limits (in-process and on Redis, shared by nodes) and the per-team live-call cap."""

from __future__ import annotations

import gc
from contextlib import AsyncExitStack

import httpx

from callgate.auth.keys import KeyType
from callgate.domain.calls import join_call
from callgate.domain.lifecycle import CallStatus
from tests.api.helpers import assert_problem
from tests.support.services import RedisServer
from tests.support.world import Team, World, WorldFactory

ORIGIN = "https://a.example"


def assert_rate_headers(response: httpx.Response, *, limit: int, remaining: int) -> None:
    assert response.headers["RateLimit-Limit"] == str(limit)
    assert response.headers["RateLimit-Remaining"] == str(remaining)
    assert 1 <= int(response.headers["RateLimit-Reset"]) <= 60


def assert_rate_limited(response: httpx.Response, *, limit: int) -> None:
    assert_problem(response, 429, "rate_limited")
    assert 1 <= int(response.headers["Retry-After"]) <= 60
    assert_rate_headers(response, limit=limit, remaining=0)


async def test_fourth_request_in_a_minute_is_429(world: World) -> None:
    team = await world.team("acme")
    key = await team.key(KeyType.SECRET, rate_limit="3/minute")
    for remaining in (2, 1, 0):
        r = await world.client.get("/v1/agents", headers=team.auth(key))
        assert r.status_code == 200, r.text
        assert_rate_headers(r, limit=3, remaining=remaining)
    r = await world.client.post("/v1/web-calls", json={"agent_id": team.agent_id}, headers=team.auth(key))
    assert_rate_limited(r, limit=3)
    # Refused requests did nothing, and the limit is the key's, not the team's.
    r = await world.client.get("/v1/calls", headers=team.auth())
    assert r.status_code == 200 and r.json()["data"] == []
    assert r.headers["RateLimit-Limit"] == "100"


async def test_publishable_key_limit_answers_the_browser(world: World) -> None:
    team = await world.team("acme")
    key = await team.key(KeyType.PUBLISHABLE, allowed_origins=[ORIGIN], rate_limit="2/minute")
    headers = {**team.auth(key), "Origin": ORIGIN}
    for _ in range(2):
        r = await world.client.post("/v1/web-calls/token", json={"agent_id": team.agent_id}, headers=headers)
        assert r.status_code == 201, r.text
    r = await world.client.post("/v1/web-calls/token", json={"agent_id": team.agent_id}, headers=headers)
    assert_rate_limited(r, limit=2)
    # The browser may read the 429 (CORS), so the SDK can back off.
    assert r.headers["access-control-allow-origin"] == ORIGIN


async def test_redis_limits_are_shared_by_nodes(world_with: WorldFactory, redis_server: RedisServer) -> None:
    async with AsyncExitStack() as stack:
        node_a = await stack.enter_async_context(world_with(redis_url=redis_server.url))
        node_b = await stack.enter_async_context(world_with(redis_url=redis_server.url))
        team = await node_a.team("acme")
        key = await team.key(KeyType.SECRET, rate_limit="3/minute")
        for node, remaining in ((node_a, 2), (node_b, 1), (node_a, 0)):
            r = await node.client.get("/v1/agents", headers=team.auth(key))
            assert r.status_code == 200, r.text
            assert_rate_headers(r, limit=3, remaining=remaining)
        assert_rate_limited(await node_b.client.get("/v1/agents", headers=team.auth(key)), limit=3)
        assert_rate_limited(await node_a.client.get("/v1/agents", headers=team.auth(key)), limit=3)
    # A stopped node must have closed its Redis connections: unclosed ones warn when collected.
    gc.collect()


async def create_call(world: World, team: Team) -> httpx.Response:
    return await world.client.post("/v1/web-calls", json={"agent_id": team.agent_id}, headers=team.auth())


async def test_live_call_cap(world: World) -> None:
    team = await world.team("small", max_live_calls=1)
    first = (await create_call(world, team)).json()
    # Created calls nobody joined are not live: they do not count.
    second = await create_call(world, team)
    assert second.status_code == 201, second.text

    now = world.runtime.clock.now()
    await world.runtime.db.write(lambda s: join_call(s, team_id=team.id, call_id=first["id"], now=now))
    assert_problem(await create_call(world, team), 429, "concurrency_limit")

    # Another team is not affected.
    other = await world.team("other", max_live_calls=1)
    assert (await create_call(world, other)).status_code == 201

    # Ending the live call frees the slot.
    r = await world.client.post(f"/v1/calls/{first['id']}/end", headers=team.auth())
    assert r.status_code == 200, r.text
    assert r.json()["status"] == CallStatus.ENDED
    assert (await create_call(world, team)).status_code == 201
