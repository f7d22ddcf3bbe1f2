"""SIGTERM drains a node: no new calls (``/readyz`` 503, joins refused), live calls go on until they end
or the drain timeout ends them ``node_shutdown``; then the process exits. Real processes, real sockets."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import websockets

from callgate.flows.demo import demo_flow
from tests.support.node import Node
from tests.support.rtvi_client import RTClient
from tests.support.world import Team, World, WorldFactory


async def _call(world: World, team: Team, agent_id: str, node: Node) -> tuple[str, str]:
    r = await world.client.post(
        "/v1/web-calls", json={"agent_id": agent_id, "mode": "text"}, headers=team.auth()
    )
    assert r.status_code == 201, r.text
    body = r.json()
    token = parse_qs(urlsplit(body["websocket_url"]).query)["token"][0]
    return body["id"], f"ws://127.0.0.1:{node.port}/v1/calls/{body['id']}/ws?token={token}"


async def _setup(world: World) -> tuple[Team, str]:
    team = await world.team("acme")
    body = {"name": "clinic", "flow": demo_flow().model_dump(mode="json", exclude_none=True)}
    r = await world.client.post("/v1/agents", json=body, headers=team.auth())
    assert r.status_code == 201, r.text
    return team, r.json()["id"]


async def _status(world: World, team: Team, call_id: str) -> dict[str, Any]:
    body: dict[str, Any] = (await world.client.get(f"/v1/calls/{call_id}", headers=team.auth())).json()
    return body


async def _answer(client: RTClient, text: str) -> str:
    seen = len(client.got.messages)
    await client.send("send-text", {"content": text})
    async with asyncio.timeout(20):
        while True:
            for _, msg in client.got.messages[seen:]:
                if msg["type"] == "bot-tts-text":
                    return str(msg["data"]["text"])
            await asyncio.sleep(0.05)


def _exited(node: Node, timeout: float) -> bool:
    """The process ended cleanly: uvicorn re-raises the SIGTERM it handled once it has shut down."""
    assert node.process is not None
    return node.process.wait(timeout=timeout) in (0, -signal.SIGTERM)


async def test_sigterm_refuses_new_calls_and_lets_live_ones_finish(
    world_with: WorldFactory, database_url: str, tmp_path: Path
) -> None:
    async with world_with(sweep_interval_s=3600) as world:
        team, agent_id = await _setup(world)
        node = Node(database_url, tmp_path / "node", drain_timeout_s=60, max_loop_lag_ms=0)
        await asyncio.to_thread(node.start)
        try:
            call_id, url = await _call(world, team, agent_id, node)
            async with RTClient(url, mode="text") as client:
                assert node.process is not None
                node.process.send_signal(signal.SIGTERM)
                base = f"http://127.0.0.1:{node.port}"
                async with httpx.AsyncClient(base_url=base) as http:
                    started = time.monotonic()
                    while (await http.get("/readyz")).status_code != 503:
                        assert time.monotonic() - started < 5, "/readyz still ready after SIGTERM"
                        await asyncio.sleep(0.05)
                    assert (await http.get("/healthz")).status_code == 200  # up, only not taking calls
                # A new caller is told to try again; its token is not spent.
                _, refused_url = await _call(world, team, agent_id, node)
                async with websockets.connect(refused_url) as ws:
                    with pytest.raises(websockets.ConnectionClosed):
                        await asyncio.wait_for(ws.recv(), 10)
                    assert ws.close_code == 1013
                # The live call goes on.
                assert "open" in (await _answer(client, "What are your opening hours?")).lower()
                assert node.process.poll() is None
                await client.send("disconnect-bot")
                await client.wait_for("server-message")
            assert await asyncio.to_thread(_exited, node, 20)
        finally:
            node.kill()
        call = await _status(world, team, call_id)
        assert (call["status"], call["end_reason"]) == ("ended", "caller_hangup")


async def test_calls_outliving_the_drain_timeout_end_node_shutdown(
    world_with: WorldFactory, database_url: str, tmp_path: Path
) -> None:
    async with world_with(sweep_interval_s=3600) as world:
        team, agent_id = await _setup(world)
        node = Node(database_url, tmp_path / "node", drain_timeout_s=1, max_loop_lag_ms=0)
        await asyncio.to_thread(node.start)
        try:
            call_id, url = await _call(world, team, agent_id, node)
            async with RTClient(url, mode="text") as client:
                assert node.process is not None
                node.process.send_signal(signal.SIGTERM)
                ended = await client.wait_for("server-message", timeout=20)
                assert ended["data"] == {"type": "call-ended", "reason": "node_shutdown"}
            assert await asyncio.to_thread(_exited, node, 20)
        finally:
            node.kill()
        call = await _status(world, team, call_id)
        assert (call["status"], call["end_reason"]) == ("ended", "node_shutdown")
