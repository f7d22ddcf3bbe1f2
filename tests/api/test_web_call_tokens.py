"""The connection details a create answer carries: the call token, its join deadline, the URLs."""

from __future__ import annotations

from datetime import datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import text

from callgate.auth import tokens
from callgate.auth.keys import KeyType
from callgate.errors import TokenMismatch, TokenReused
from tests.support.world import World, WorldFactory

ORIGIN = "https://a.example"


def at(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


async def redeem(world: World, token: str, *, call_id: str, transport: str) -> tokens.CallToken:
    return await tokens.redeem(
        token,
        key=world.runtime.signing_key,
        now=world.runtime.clock.now(),
        call_id=call_id,
        transport=transport,
        ledger=world.runtime.ledger,
    )


async def test_websocket_answer_carries_a_single_use_token(world: World) -> None:
    team = await world.team("acme")
    r = await world.client.post("/v1/web-calls", json={"agent_id": team.agent_id}, headers=team.auth())
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["transport"] == "websocket"
    url = urlsplit(body["websocket_url"])
    assert (url.scheme, url.netloc, url.path) == ("ws", "testserver", f"/v1/calls/{body['id']}/ws")
    assert parse_qs(url.query) == {"token": [body["token"]]}
    assert body["webrtc_offer_url"] is None and body["sip"] is None

    created, expires = at(body["created_at"]), at(body["expires_at"])
    assert abs((expires - created) - timedelta(seconds=60)) < timedelta(seconds=1)
    call = (await world.client.get(f"/v1/calls/{body['id']}", headers=team.auth())).json()
    assert abs(at(call["join_deadline"]) - expires) < timedelta(seconds=1)

    claims = await redeem(world, body["token"], call_id=body["id"], transport="websocket")
    assert claims.team_id == team.id
    with pytest.raises(TokenReused):
        await redeem(world, body["token"], call_id=body["id"], transport="websocket")


async def test_token_is_bound_to_its_call_and_transport(world: World) -> None:
    team = await world.team("acme")
    first, second = [
        (
            await world.client.post(
                "/v1/web-calls", json={"agent_id": team.agent_id, "transport": transport}, headers=team.auth()
            )
        ).json()
        for transport in ("webrtc", "websocket")
    ]
    assert first["websocket_url"] is None
    offer_url = f"http://testserver/v1/calls/{first['id']}/webrtc/offer?token={first['token']}"
    assert first["webrtc_offer_url"] == offer_url
    with pytest.raises(TokenMismatch):
        await redeem(world, first["token"], call_id=second["id"], transport="webrtc")
    with pytest.raises(TokenMismatch):
        await redeem(world, first["token"], call_id=first["id"], transport="websocket")
    await redeem(world, first["token"], call_id=first["id"], transport="webrtc")


async def test_per_key_token_ttl(world: World) -> None:
    team = await world.team("acme")
    secret = await team.key(KeyType.SECRET, token_ttl_s=15)
    publishable = await team.key(KeyType.PUBLISHABLE, allowed_origins=[ORIGIN], token_ttl_s=300)
    r = await world.client.post("/v1/web-calls", json={"agent_id": team.agent_id}, headers=team.auth(secret))
    body = r.json()
    assert abs(at(body["expires_at"]) - at(body["created_at"]) - timedelta(seconds=15)) < timedelta(seconds=1)
    r = await world.client.post(
        "/v1/web-calls/token",
        json={"agent_id": team.agent_id},
        headers={**team.auth(publishable), "Origin": ORIGIN},
    )
    body = r.json()
    assert abs(at(body["expires_at"]) - at(body["created_at"]) - timedelta(seconds=300)) < timedelta(
        seconds=1
    )
    decoded = tokens.decode(body["token"], key=world.runtime.signing_key, now=world.runtime.clock.now())
    assert abs(decoded.expires_at - at(body["expires_at"])) < timedelta(seconds=1)


async def test_join_deadline_setting(world_with: WorldFactory) -> None:
    async with world_with(join_deadline_s=30, public_url="https://calls.example.com/base") as world:
        team = await world.team("acme")
        r = await world.client.post("/v1/web-calls", json={"agent_id": team.agent_id}, headers=team.auth())
        body = r.json()
        assert abs(at(body["expires_at"]) - at(body["created_at"]) - timedelta(seconds=30)) < timedelta(
            seconds=1
        )
        # Behind a proxy the public URL is used, with wss for https.
        assert body["websocket_url"].startswith(
            f"wss://calls.example.com/base/v1/calls/{body['id']}/ws?token="
        )


async def test_sip_answer_carries_credentials_that_are_not_stored(world: World) -> None:
    team = await world.team("acme")
    r = await world.client.post(
        "/v1/web-calls", json={"agent_id": team.agent_id, "transport": "sip"}, headers=team.auth()
    )
    assert r.status_code == 201, r.text
    sip = r.json()["sip"]
    assert sip["sip_username"] and len(sip["sip_password"]) >= 20
    call = (await world.client.get(f"/v1/calls/{r.json()['id']}", headers=team.auth())).json()
    assert sip["sip_password"] not in str(call)
    async with world.runtime.db.read() as s:
        stored = " ".join(str(row) for row in await s.execute(text("SELECT * FROM call")))
    assert sip["sip_username"] in stored  # the row is there...
    assert sip["sip_password"] not in stored  # ...without the password
