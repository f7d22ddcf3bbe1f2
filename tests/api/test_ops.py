"""Operations: health, readiness (and unreadiness), Prometheus metrics, the OpenAPI document, and logs
that never carry a key or a call token."""

from __future__ import annotations

import contextlib
import itertools
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import websockets

from callgate.auth import tokens
from callgate.auth.keys import KeyType
from callgate.clock import utcnow
from callgate.domain.keys import revoke_key
from callgate.errors import InvalidToken
from callgate.log import JSONFormatter
from tests.api.helpers import assert_problem
from tests.support.live import LiveServer
from tests.support.services import PostgresServer, RedisServer
from tests.support.world import World, WorldFactory, make_settings, open_world

_databases = itertools.count()


async def test_health_and_readiness(world: World) -> None:
    r = await world.client.get("/healthz")
    assert (r.status_code, r.json()) == (200, {"status": "ok"})
    r = await world.client.get("/readyz")
    assert (r.status_code, r.json()) == (200, {"status": "ready"})


async def test_ready_with_redis(world_with: WorldFactory, redis_server: RedisServer) -> None:
    async with world_with(redis_url=redis_server.url) as world:
        assert (await world.client.get("/readyz")).status_code == 200


async def test_not_ready_without_redis(world_with: WorldFactory) -> None:
    with RedisServer() as redis:
        async with world_with(redis_url=redis.url) as world:
            assert (await world.client.get("/readyz")).status_code == 200
            redis.stop()
            assert_problem(await world.client.get("/readyz"), 503, "unavailable")
            assert (await world.client.get("/healthz")).status_code == 200


@pytest.fixture
async def pg_world(
    pg_server: PostgresServer, pg_template: str, tmp_path: Path
) -> AsyncIterator[tuple[World, PostgresServer, str]]:
    name = f"ops_{next(_databases)}"
    url = pg_server.create_database(name, template=pg_template)
    try:
        async with open_world(make_settings(tmp_path, url)) as world:
            yield world, pg_server, name
    finally:
        pg_server.drop_database(name)


async def test_not_ready_when_the_database_is_gone(pg_world: tuple[World, PostgresServer, str]) -> None:
    world, pg, name = pg_world
    assert (await world.client.get("/readyz")).status_code == 200
    pg.drop_database(name)
    assert_problem(await world.client.get("/readyz"), 503, "unavailable")
    assert (await world.client.get("/healthz")).status_code == 200


async def test_metrics(world: World) -> None:
    team = await world.team("acme")
    await world.client.get(f"/v1/agents/{team.agent_id}", headers=team.auth())
    await world.client.get("/v1/agents/agt_nope", headers=team.auth())
    await world.client.get("/v1/nothing")
    await world.client.post("/v1/web-calls", json={"agent_id": team.agent_id}, headers=team.auth())
    r = await world.client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert "# TYPE callgate_http_requests_total counter" in text
    # Routes are labelled by their template, so ids never multiply the series.
    assert 'callgate_http_requests_total{method="GET",route="/v1/agents/{agent_id}",status="200"} 1.0' in text
    assert 'callgate_http_requests_total{method="GET",route="/v1/agents/{agent_id}",status="404"} 1.0' in text
    assert team.agent_id not in text
    assert 'callgate_calls_created_total{transport="websocket"} 1.0' in text
    assert "callgate_http_request_seconds_bucket" in text


async def test_openapi(world: World) -> None:
    r = await world.client.get("/openapi.json")
    assert r.status_code == 200
    spec = r.json()
    operations = {
        op["operationId"]: (method.upper(), path)
        for path, item in spec["paths"].items()
        for method, op in item.items()
        if isinstance(op, dict) and "operationId" in op
    }
    expected = {
        "createAgent": ("POST", "/v1/agents"),
        "listAgents": ("GET", "/v1/agents"),
        "getAgent": ("GET", "/v1/agents/{agent_id}"),
        "updateAgent": ("PATCH", "/v1/agents/{agent_id}"),
        "deleteAgent": ("DELETE", "/v1/agents/{agent_id}"),
        "createWebCall": ("POST", "/v1/web-calls"),
        "createWebCallToken": ("POST", "/v1/web-calls/token"),
        "getCall": ("GET", "/v1/calls/{call_id}"),
        "listCalls": ("GET", "/v1/calls"),
        "endCall": ("POST", "/v1/calls/{call_id}/end"),
        "createContact": ("POST", "/v1/contacts"),
        "listContacts": ("GET", "/v1/contacts"),
        "getContact": ("GET", "/v1/contacts/{contact_id}"),
        "updateContact": ("PATCH", "/v1/contacts/{contact_id}"),
        "deleteContact": ("DELETE", "/v1/contacts/{contact_id}"),
        "createPhoneNumber": ("POST", "/v1/phone-numbers"),
        "listPhoneNumbers": ("GET", "/v1/phone-numbers"),
        "getPhoneNumber": ("GET", "/v1/phone-numbers/{number_id}"),
        "updatePhoneNumber": ("PATCH", "/v1/phone-numbers/{number_id}"),
        "deletePhoneNumber": ("DELETE", "/v1/phone-numbers/{number_id}"),
        "healthz": ("GET", "/healthz"),
        "readyz": ("GET", "/readyz"),
    }
    assert {k: operations.get(k) for k in expected} == expected
    assert (await world.client.get("/docs")).status_code == 200


async def test_logs_never_carry_keys_or_tokens(world: World, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    team = await world.team("acme")
    publishable = await team.key(KeyType.PUBLISHABLE, allowed_origins=["https://a.example"])
    shared = await team.key(KeyType.SHARED, agent_ids=[team.agent_id])
    revoked = await team.key(KeyType.SECRET)
    secrets = [team.secret, publishable, shared, revoked]

    # Keys in use: good, refused (wrong origin, wrong secret, revoked), rate-limit counted.
    for key in (team.secret, publishable, shared):
        r = await world.client.post(
            "/v1/web-calls/token",
            json={"agent_id": team.agent_id},
            headers={**team.auth(key), "Origin": "https://a.example"},
        )
        assert r.status_code == 201, r.text
        secrets.append(r.json()["token"])
    await world.client.post(
        "/v1/web-calls/token",
        json={"agent_id": team.agent_id},
        headers={**team.auth(publishable), "Origin": "https://evil.example"},
    )
    wrong = team.secret[:-4] + "abcd"
    secrets.append(wrong)
    await world.client.get("/v1/agents", headers=team.auth(wrong))
    key_id = (await world.runtime.keys.authenticate(revoked, now=utcnow())).key_id
    await world.runtime.db.write(lambda s: revoke_key(s, team_id=team.id, key_id=key_id, now=utcnow()))
    world.runtime.keys.forget()
    await world.client.get("/v1/agents", headers=team.auth(revoked))

    # Tokens in use: in a URL's query string, redeemed, reused, tampered with.
    r = await world.client.post("/v1/web-calls", json={"agent_id": team.agent_id}, headers=team.auth())
    call = r.json()
    secrets.append(call["token"])
    await world.client.get(call["websocket_url"].replace("ws://", "http://"))
    for token in (call["token"], call["token"], call["token"][:-3] + "xyz"):
        with contextlib.suppress(InvalidToken):
            await tokens.redeem(
                token,
                key=world.runtime.signing_key,
                now=utcnow(),
                call_id=call["id"],
                transport="websocket",
                ledger=world.runtime.ledger,
            )

    ours = [r for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))]  # the test client's
    assert any(r.name == "callgate.http" for r in ours), "no request was logged: the test sees nothing"
    formatter = JSONFormatter()
    for record in ours:
        rendered = " ".join([record.getMessage(), formatter.format(record), repr(vars(record))])
        for secret in secrets:
            parsed_secret = secret[-32:]  # a key's secret part, or a token's signature tail
            assert secret not in rendered, (record.name, rendered)
            assert parsed_secret not in rendered, (record.name, rendered)


async def test_every_response_and_handshake_names_the_node(live: LiveServer) -> None:
    """Behind a load balancer, ``X-Callgate-Node`` tells which node answered (tests/e2e/test_multinode.py)."""
    node = live.runtime.node_id
    for path in ("/healthz", "/v1/agents", "/no-such-route"):  # answered, refused, unrouted
        r = await live.world.client.get(path)
        assert r.headers["x-callgate-node"] == node, path
    team = await live.world.team("acme")
    call = await live.web_call(team, team.agent_id, mode="text")
    url = f"{live.url.replace('http', 'ws')}/v1/calls/{call['id']}/ws?token={call['token']}"
    async with websockets.connect(url) as ws:
        assert ws.response is not None
        assert ws.response.headers["x-callgate-node"] == node
