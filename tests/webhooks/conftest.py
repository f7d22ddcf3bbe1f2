"""Webhook fixtures: the app on fast retry settings with loopback receivers allowed, a real receiver,
and helpers that drive a call through its life with the domain functions the sessions use."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from callgate.app import create_app
from callgate.clock import utcnow
from callgate.config import Settings
from callgate.domain import calls
from callgate.domain.lifecycle import CallStatus, EndReason
from callgate.runtime import Runtime
from tests.conftest import Team, World, make_settings
from tests.webhooks.receiver import Receiver

FAST: dict[str, object] = {
    "webhooks_allow_private": True,
    "webhooks_backoff_base_s": 0.05,
    "webhooks_backoff_max_s": 0.4,
    "webhooks_poll_interval_s": 0.02,
    "webhooks_timeout_s": 1.0,
    "webhooks_max_attempts": 4,
    "webhooks_lease_s": 3.0,
}


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return make_settings(tmp_path, database_url, **FAST)


@asynccontextmanager
async def open_world(settings: Settings) -> AsyncIterator[World]:
    runtime = Runtime(settings)
    app = create_app(runtime=runtime)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield World(runtime, client)


WorldFactory = Callable[..., AbstractAsyncContextManager[World]]


@pytest.fixture
def world_with(tmp_path: Path, database_url: str) -> WorldFactory:
    """``async with world_with(webhooks_dispatch=False) as w:`` — another node on the same database."""

    def make(**overrides: object) -> AbstractAsyncContextManager[World]:
        return open_world(make_settings(tmp_path, database_url, **{**FAST, **overrides}))

    return make


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    r.start()
    yield r
    r.stop()


async def add_endpoint(world: World, team: Team, url: str, **fields: Any) -> dict[str, Any]:
    r = await world.client.post("/v1/webhook-endpoints", json={"url": url, **fields}, headers=team.auth())
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


async def new_call(world: World, team: Team, agent_id: str | None = None, **fields: Any) -> str:
    body = {"agent_id": agent_id or team.agent_id, **fields}
    r = await world.client.post("/v1/web-calls", json=body, headers=team.auth())
    assert r.status_code == 201, r.text
    call_id: str = r.json()["id"]
    return call_id


async def run_call(
    world: World,
    team: Team,
    call_id: str,
    *,
    turns: tuple[tuple[str, str], ...] = (("agent", "Hello, how can I help?"), ("user", "Just testing.")),
    reason: EndReason = EndReason.CALLER_HANGUP,
    data: dict[str, Any] | None = None,
    recording: str | None = None,
) -> None:
    """join → in_progress → turns → the session's finish, as a live session does it."""
    db, now = world.runtime.db, utcnow()
    await db.write(lambda s: calls.join_call(s, team_id=team.id, call_id=call_id, now=now))

    async def start(s: Any) -> None:
        call = await calls.get_call(s, team_id=team.id, call_id=call_id, for_update=True)
        await calls.transition(s, call=call, to=CallStatus.IN_PROGRESS, now=now)

    await db.write(start)
    for i, (role, text) in enumerate(turns):
        at = now + timedelta(seconds=i)
        fields = {
            "role": role,
            "text": text,
            "interrupted": False,
            "started_at": at,
            "ended_at": at + timedelta(milliseconds=500),
            "total_ms": 400 if role == "agent" else None,
        }
        await db.write(lambda s, f=fields: calls.add_turn(s, call_id=call_id, fields=f))  # type: ignore[misc]
    end = utcnow()
    await db.write(
        lambda s: calls.finish_call(
            s, team_id=team.id, call_id=call_id, reason=reason, now=end, data=data, recording_path=recording
        )
    )
