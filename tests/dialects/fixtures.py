"""Small helpers shared by the Voxworks, VoiceHub and Verbex dialect tests."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from websockets.asyncio.client import ClientConnection

from callgate.flows.demo import demo_flow
from tests.support.world import Team, World


async def flow_agent(world: World, team: Team, **fields: object) -> str:
    """The demo clinic flow (runs with no LLM) as an agent of ``team``."""
    body = {"name": "clinic", "flow": demo_flow().model_dump(mode="json", exclude_none=True), **fields}
    r = await world.client.post("/v1/agents", json=body, headers=team.auth())
    assert r.status_code == 201, r.text
    agent_id: str = r.json()["id"]
    return agent_id


async def next_json(ws: ClientConnection, match: dict[str, Any], *, timeout: float = 15) -> dict[str, Any]:
    """The next JSON text frame whose top-level fields include ``match`` (binary frames skipped)."""
    async with asyncio.timeout(timeout):
        while True:
            raw = await ws.recv()
            if isinstance(raw, bytes):
                continue
            msg: dict[str, Any] = json.loads(raw)
            if all(msg.get(k) == v for k, v in match.items()):
                return msg


async def agent_says(ws: ClientConnection, *, timeout: float = 15) -> str:
    """RTVI ``bot-tts-text`` pieces until the agent pauses."""
    parts = [(await next_json(ws, {"type": "bot-tts-text"}, timeout=timeout))["data"]["text"]]
    while True:
        try:
            msg = await next_json(ws, {"type": "bot-tts-text"}, timeout=1.0)
        except TimeoutError:
            return " ".join(parts)
        parts.append(msg["data"]["text"])


def rtvi(type_: str, data: dict[str, Any] | None = None) -> str:
    return json.dumps({"label": "rtvi-ai", "type": type_, "id": "t1", "data": data or {}})
