"""The session ends calls by itself: silence timeout, max duration, and an end made elsewhere."""

from __future__ import annotations

import asyncio
import json

import websockets

from callgate.clock import utcnow
from callgate.domain import calls
from callgate.domain.lifecycle import EndReason
from tests.support.live import LiveServer


async def join(url: str) -> websockets.ClientConnection:
    ws = await websockets.connect(url)
    await ws.send(json.dumps({"label": "rtvi-ai", "type": "client-ready", "data": {}}))
    async with asyncio.timeout(15):
        while json.loads(await ws.recv())["type"] != "bot-ready":
            pass
    return ws


async def ended_reason(ws: websockets.ClientConnection, *, timeout: float) -> str | None:
    reason = None
    async with asyncio.timeout(timeout):
        try:
            while True:
                raw = await ws.recv()
                if isinstance(raw, str) and json.loads(raw)["type"] == "server-message":
                    reason = json.loads(raw)["data"].get("reason")
        except websockets.ConnectionClosed:
            return reason


async def test_silence_timeout_ends_the_call(live: LiveServer) -> None:
    team = await live.world.team("acme")
    agent_id = await live.flow_agent(team, silence_timeout_s=5)
    call = await live.web_call(team, agent_id, mode="text")
    ws = await join(str(call["websocket_url"]))
    assert await ended_reason(ws, timeout=15) == "silence_timeout"
    body = (await live.world.client.get(f"/v1/calls/{call['id']}", headers=team.auth())).json()
    assert body["status"] == "ended" and body["end_reason"] == "silence_timeout"


async def test_max_duration_ends_the_call(live: LiveServer) -> None:
    team = await live.world.team("acme")
    agent_id = await live.flow_agent(team, max_duration_s=10, silence_timeout_s=60)
    call = await live.web_call(team, agent_id, mode="text")
    ws = await join(str(call["websocket_url"]))
    for _ in range(4):  # keep talking so silence never ends it
        await asyncio.sleep(2)
        await ws.send(
            json.dumps(
                {"label": "rtvi-ai", "type": "send-text", "data": {"content": "what are your opening hours"}}
            )
        )
    assert await ended_reason(ws, timeout=10) == "max_duration"


async def test_end_written_by_another_node_reaches_the_session(live: LiveServer) -> None:
    """No Redis here: another node can only change the database; the session notices by polling."""
    team = await live.world.team("acme")
    agent_id = await live.flow_agent(team)
    call = await live.web_call(team, agent_id, mode="text")
    ws = await join(str(call["websocket_url"]))
    now = utcnow()
    await live.runtime.db.write(
        lambda s: calls.end_call(
            s, team_id=team.id, call_id=str(call["id"]), reason=EndReason.API_REQUEST, now=now
        )
    )
    assert await ended_reason(ws, timeout=10) == "api_request"
