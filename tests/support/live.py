"""A real callgate server (uvicorn on a free port, the app's own lifespan) for real-time tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
import uvicorn

from callgate.app import create_app
from callgate.clock import SystemClock
from callgate.config import Settings
from callgate.flows.demo import demo_flow
from callgate.runtime import Runtime
from callgate.server import ConnectionLimits, ServerConfig
from tests.support.services import free_port
from tests.support.world import Team, World


class MovableClock(SystemClock):
    """The system clock, which a test can move forward (``live.move_clock(s)``): credentials, nonces
    and deadlines age without waiting."""

    ahead_s = 0.0

    def now(self) -> datetime:
        return super().now() + timedelta(seconds=self.ahead_s)

    def monotonic(self) -> float:
        return super().monotonic() + self.ahead_s


@dataclass
class LiveServer:
    url: str
    world: World

    @property
    def runtime(self) -> Runtime:
        return self.world.runtime

    def move_clock(self, ahead_s: float) -> None:
        """Move the server's clock ``ahead_s`` seconds ahead of the system clock."""
        clock = self.runtime.clock
        assert isinstance(clock, MovableClock)
        clock.ahead_s = ahead_s

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
    runtime = Runtime(settings, clock=MovableClock())
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


async def wait_settled(live: LiveServer, auth: dict[str, str], call_id: str) -> dict[str, object]:
    for _ in range(200):
        body: dict[str, object] = (await live.world.client.get(f"/v1/calls/{call_id}", headers=auth)).json()
        if body["status"] in ("ended", "failed"):
            return body
        await asyncio.sleep(0.05)
    raise AssertionError("call did not end")


async def call_status(live: LiveServer, team_auth: dict[str, str], call_id: str) -> str:
    r = await live.world.client.get(f"/v1/calls/{call_id}", headers=team_auth)
    status: str = r.json()["status"]
    return status


async def settled_status(live: LiveServer, team_auth: dict[str, str], call_id: str) -> str:
    """The status once the server has finished with the connection (it ends calls asynchronously)."""
    status = ""
    for _ in range(100):
        status = await call_status(live, team_auth, call_id)
        if status in ("ended", "failed"):
            break
        await asyncio.sleep(0.05)
    return status


async def settled_call(live: LiveServer, auth: dict[str, str], call_id: str) -> dict[str, Any]:
    for _ in range(200):
        body: dict[str, Any] = (await live.world.client.get(f"/v1/calls/{call_id}", headers=auth)).json()
        if body["status"] in ("ended", "failed"):
            return body
        await asyncio.sleep(0.05)
    raise AssertionError("the call did not end")


async def ended_within(
    live: LiveServer, auth: dict[str, str], call_id: str, seconds: float
) -> dict[str, object]:
    deadline = time.monotonic() + seconds
    while True:
        body: dict[str, object] = (await live.world.client.get(f"/v1/calls/{call_id}", headers=auth)).json()
        if body["status"] == "ended" or time.monotonic() > deadline:
            return body
        await asyncio.sleep(0.05)
