"""Call tokens at the WebSocket: refused with the documented close codes, call state untouched."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

import pytest
import websockets

from callgate.auth import tokens
from callgate.clock import utcnow
from tests.support.live import LiveServer, call_status, settled_status


async def close_code(url: str, *, first: str | None = None) -> int:
    async with websockets.connect(url) as ws:
        if first is not None:
            await ws.send(first)
        with pytest.raises(websockets.ConnectionClosed):
            async with asyncio.timeout(10):
                while True:
                    await ws.recv()
        assert ws.close_code is not None
        return ws.close_code


def ws_url(live: LiveServer, call_id: str, token: str) -> str:
    return f"{live.url.replace('http', 'ws')}/v1/calls/{call_id}/ws?token={token}"


async def test_missing_and_garbage_tokens(live: LiveServer) -> None:
    team = await live.world.team("acme")
    call = await live.web_call(team, team.agent_id, mode="text")
    assert await close_code(ws_url(live, str(call["id"]), "")) == 4401
    assert await close_code(ws_url(live, str(call["id"]), "not.a.jwt")) == 4401
    assert await call_status(live, team.auth(), str(call["id"])) == "created"


async def test_token_is_single_use(live: LiveServer) -> None:
    team = await live.world.team("acme")
    agent_id = await live.flow_agent(team)
    call = await live.web_call(team, agent_id, mode="text")
    url = str(call["websocket_url"])
    async with websockets.connect(url) as ws:
        await ws.send(json.dumps({"label": "rtvi-ai", "type": "client-ready", "data": {}}))
        async with asyncio.timeout(15):
            while json.loads(await ws.recv())["type"] != "bot-ready":
                pass
        assert await close_code(url) == 4409
    assert await settled_status(live, team.auth(), str(call["id"])) == "ended"


async def test_expired_token(live: LiveServer) -> None:
    team = await live.world.team("acme")
    call = await live.web_call(team, team.agent_id, mode="text")
    token, _ = tokens.issue(
        key=live.runtime.signing_key,
        call_id=str(call["id"]),
        team_id=team.id,
        transport="websocket",
        now=utcnow() - timedelta(minutes=5),
        ttl_s=60,
    )
    assert await close_code(ws_url(live, str(call["id"]), token)) == 4410


async def test_token_bound_to_call_and_transport(live: LiveServer) -> None:
    team = await live.world.team("acme")
    first = await live.web_call(team, team.agent_id, mode="text")
    second = await live.web_call(team, team.agent_id, mode="text")
    assert await close_code(ws_url(live, str(second["id"]), str(first["token"]))) == 4403
    webrtc = await live.web_call(team, team.agent_id, transport="webrtc")
    assert await close_code(ws_url(live, str(webrtc["id"]), str(webrtc["token"]))) == 4403
    for call in (first, second, webrtc):
        assert await call_status(live, team.auth(), str(call["id"])) == "created"


async def test_token_signed_with_another_key(live: LiveServer) -> None:
    team = await live.world.team("acme")
    call = await live.web_call(team, team.agent_id, mode="text")
    forged, _ = tokens.issue(
        key="another-key-" + "y" * 40,
        call_id=str(call["id"]),
        team_id=team.id,
        transport="websocket",
        now=utcnow(),
        ttl_s=60,
    )
    assert await close_code(ws_url(live, str(call["id"]), forged)) == 4401


async def test_first_message_must_be_client_ready(live: LiveServer) -> None:
    team = await live.world.team("acme")
    agent_id = await live.flow_agent(team)
    call = await live.web_call(team, agent_id, mode="text")
    code = await close_code(
        str(call["websocket_url"]), first='{"label":"rtvi-ai","type":"send-text","data":{}}'
    )
    assert code == 4400
    assert await settled_status(live, team.auth(), str(call["id"])) == "ended"


async def test_malformed_json_mid_call_closes_with_4400(live: LiveServer) -> None:
    team = await live.world.team("acme")
    agent_id = await live.flow_agent(team)
    call = await live.web_call(team, agent_id, mode="text")
    async with websockets.connect(str(call["websocket_url"])) as ws:
        await ws.send(json.dumps({"label": "rtvi-ai", "type": "client-ready", "data": {}}))
        async with asyncio.timeout(15):
            while json.loads(await ws.recv())["type"] != "bot-ready":
                pass
        await ws.send("{not json")
        with pytest.raises(websockets.ConnectionClosed):
            async with asyncio.timeout(10):
                while True:
                    await ws.recv()
        assert ws.close_code == 4400
    assert await settled_status(live, team.auth(), str(call["id"])) == "ended"
    r = await live.world.client.get(f"/v1/calls/{call['id']}", headers=team.auth())
    assert r.json()["end_reason"] == "transport_lost"


async def test_oversized_audio_frame_closes_with_1009(live: LiveServer) -> None:
    team = await live.world.team("acme")
    agent_id = await live.flow_agent(team)
    call = await live.web_call(team, agent_id, mode="text")
    async with websockets.connect(str(call["websocket_url"]), max_size=None) as ws:
        await ws.send(json.dumps({"label": "rtvi-ai", "type": "client-ready", "data": {}}))
        async with asyncio.timeout(15):
            while json.loads(await ws.recv())["type"] != "bot-ready":
                pass
        await ws.send(b"\x00" * 200_000)
        with pytest.raises(websockets.ConnectionClosed):
            async with asyncio.timeout(10):
                while True:
                    await ws.recv()
        assert ws.close_code == 1009


async def test_end_call_from_api_hangs_up_the_session(live: LiveServer) -> None:
    team = await live.world.team("acme")
    agent_id = await live.flow_agent(team)
    call = await live.web_call(team, agent_id, mode="text")
    async with websockets.connect(str(call["websocket_url"])) as ws:
        await ws.send(json.dumps({"label": "rtvi-ai", "type": "client-ready", "data": {}}))
        async with asyncio.timeout(15):
            while json.loads(await ws.recv())["type"] != "bot-ready":
                pass
        r = await live.world.client.post(f"/v1/calls/{call['id']}/end", headers=team.auth())
        assert r.status_code == 200 and r.json()["end_reason"] == "api_request"
        ended = None
        with pytest.raises(websockets.ConnectionClosed):
            async with asyncio.timeout(10):
                while True:
                    raw = await ws.recv()
                    if isinstance(raw, str) and json.loads(raw)["type"] == "server-message":
                        ended = json.loads(raw)["data"]
        assert ended == {"type": "call-ended", "reason": "api_request"}
        assert ws.close_code == 1000
