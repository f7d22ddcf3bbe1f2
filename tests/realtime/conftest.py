"""A real callgate server (uvicorn on a free port) for real-time tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn

from callgate.app import create_app
from callgate.config import Settings
from callgate.flows.demo import demo_flow
from callgate.runtime import Runtime
from callgate.server import ConnectionLimits, ServerConfig
from tests.conftest import Team, World, make_settings
from tests.services import free_port


@dataclass
class LiveServer:
    url: str
    world: World

    @property
    def runtime(self) -> Runtime:
        return self.world.runtime

    async def flow_agent(self, team: Team, **fields: object) -> str:
        body = {"name": "clinic", "flow": demo_flow().model_dump(mode="json", exclude_none=True), **fields}
        r = await self.world.client.post("/v1/agents", json=body, headers=team.auth())
        assert r.status_code == 201, r.text
        agent_id: str = r.json()["id"]
        return agent_id

    async def web_call(self, team: Team, agent_id: str, **fields: object) -> dict[str, object]:
        r = await self.world.client.post(
            "/v1/web-calls", json={"agent_id": agent_id, **fields}, headers=team.auth()
        )
        assert r.status_code == 201, r.text
        body: dict[str, object] = r.json()
        return body


async def serve(settings: Settings, *, limits: ConnectionLimits | None = None) -> AsyncIterator[LiveServer]:
    """A server on a free port; with ``limits``, on the guarded protocols ``callgate serve`` runs."""
    runtime = Runtime(settings)
    app = create_app(runtime=runtime)
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_config=None, access_log=False, lifespan="on"
    )
    if limits is not None:
        config = ServerConfig(
            app,
            limits=limits,
            host="127.0.0.1",
            port=port,
            log_config=None,
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=5,  # a failed test's leftover sockets must not hang the teardown
        )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.02)
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            yield LiveServer(url=base, world=World(runtime, client))
    finally:
        server.should_exit = True
        await task


@pytest.fixture
def live_settings(tmp_path: Path, sqlite_template: Path) -> Settings:
    path = tmp_path / "callgate.db"
    path.write_bytes(sqlite_template.read_bytes())
    return make_settings(tmp_path, f"sqlite+aiosqlite:///{path}", public_url=None)


@pytest.fixture
async def live(live_settings: Settings) -> AsyncIterator[LiveServer]:
    async for server in serve(live_settings):
        yield server
