"""Hostile frames on a live RTVI WebSocket call: the documented close code, and the call ends at once."""

from __future__ import annotations

import asyncio
import json

import pytest
import websockets
from websockets.asyncio.client import ClientConnection

from tests.realtime.test_rtvi import DEEP
from tests.support.live import LiveServer, ended_within


async def joined(ws: ClientConnection) -> None:
    await ws.send(json.dumps({"label": "rtvi-ai", "type": "client-ready", "data": {}}))
    async with asyncio.timeout(15):
        while json.loads(await ws.recv())["type"] != "bot-ready":
            pass


async def closed_with(ws: ClientConnection) -> tuple[int | None, list[dict[str, object]]]:
    """Read until the server closes; returns the close code and the JSON messages seen on the way."""
    seen = []
    with pytest.raises(websockets.ConnectionClosed):
        async with asyncio.timeout(10):
            while True:
                raw = await ws.recv()
                if isinstance(raw, str):
                    seen.append(json.loads(raw))
    return ws.close_code, seen


async def test_deeply_nested_json_mid_call_closes_4400_and_ends_the_call(live: LiveServer) -> None:
    team = await live.world.team("acme")
    agent_id = await live.flow_agent(team)
    call = await live.web_call(team, agent_id, mode="text")
    async with websockets.connect(str(call["websocket_url"])) as ws:
        await joined(ws)
        await ws.send(DEEP)
        code, seen = await closed_with(ws)
        assert ws.close_reason == "message nested deeper than 32 levels"
    assert code == 4400
    assert {"type": "error", "message": "message nested deeper than 32 levels", "fatal": True} in [
        {"type": m["type"], **m["data"]}
        for m in seen
        if m["type"] == "error"  # type: ignore[dict-item]
    ]
    body = await ended_within(live, team.auth(), str(call["id"]), 2.0)
    assert (body["status"], body["end_reason"]) == ("ended", "transport_lost")


async def test_deeply_nested_client_ready_closes_4400_and_ends_the_call(live: LiveServer) -> None:
    team = await live.world.team("acme")
    agent_id = await live.flow_agent(team)
    call = await live.web_call(team, agent_id, mode="text")
    async with websockets.connect(str(call["websocket_url"])) as ws:
        await ws.send(DEEP.replace('"type":"x"', '"type":"client-ready"'))
        code, _ = await closed_with(ws)
    assert code == 4400
    body = await ended_within(live, team.auth(), str(call["id"]), 2.0)
    assert (body["status"], body["end_reason"]) == ("ended", "transport_lost")
