"""The app in-process for tests: settings on a test database, a World (runtime + HTTP client), Teams."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from callgate.app import create_app
from callgate.auth.keys import KeyType
from callgate.clock import Clock, utcnow
from callgate.config import Settings
from callgate.domain.agents import create_agent
from callgate.domain.keys import create_key, get_or_create_team
from callgate.runtime import Runtime


def make_settings(tmp_path: Path, database_url: str, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "data_dir": tmp_path / "data",
        "database_url": database_url,
        "secret_key": "test-secret-key-" + "x" * 32,
        "log_json": False,
        "speech_warmup": False,
        # A loaded test machine's loop lags and its STT runs slow; admission control is tested on its own
        # (test_admission.py).
        "max_loop_lag_ms": 0,
        "max_stt_wait_ms": 0,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@dataclass
class Team:
    id: str
    name: str
    secret: str
    agent_id: str
    runtime: Runtime

    async def key(self, key_type: KeyType, **kwargs: object) -> str:
        now = utcnow()
        _, plaintext = await self.runtime.db.write(
            lambda s: create_key(s, team_id=self.id, key_type=key_type, now=now, **kwargs)  # type: ignore[arg-type]
        )
        self.runtime.origins.invalidate()
        return plaintext

    def auth(self, key: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {key or self.secret}"}


PROMPT_AGENT = {
    "name": "helper",
    "prompt": "You are a helpful assistant for {{company}}.",
    "variables": {"company": "Acme"},
}


@dataclass
class World:
    runtime: Runtime
    client: httpx.AsyncClient

    async def team(self, name: str, *, max_live_calls: int = 20) -> Team:
        now = utcnow()

        async def job(s):  # type: ignore[no-untyped-def]
            team = await get_or_create_team(s, name=name, now=now, max_live_calls=max_live_calls)
            _, secret = await create_key(s, team_id=team.id, key_type=KeyType.SECRET, now=now)
            agent = await create_agent(
                s,
                team_id=team.id,
                fields={
                    **PROMPT_AGENT,
                    "flow": None,
                    "initial_message": None,
                    "voice": None,
                    "stt": {},
                    "llm": {},
                    "tts": {},
                    "max_duration_s": 600,
                    "silence_timeout_s": 30,
                    "webhook_url": None,
                },
                now=now,
            )
            return team.id, secret, agent.id

        team_id, secret, agent_id = await self.runtime.db.write(job)
        return Team(team_id, name, secret, agent_id, self.runtime)


@asynccontextmanager
async def open_world(settings: Settings, *, clock: Clock | None = None) -> AsyncIterator[World]:
    """The app on ``settings``, started, with an in-process client on it (what ``world`` yields);
    ``clock`` replaces the system clock (e.g. ``tests.support.live.MovableClock``)."""
    runtime = Runtime(settings, clock=clock)
    app = create_app(runtime=runtime)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield World(runtime, client)


WorldFactory = Callable[..., AbstractAsyncContextManager[World]]
"""``async with world_with(**setting_overrides) as w:`` — another node on the test's database."""
