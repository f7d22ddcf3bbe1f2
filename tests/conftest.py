"""Shared fixtures: real SQLite and PostgreSQL databases, a real Redis, the app on either engine."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from callgate.app import create_app
from callgate.auth.keys import KeyType
from callgate.clock import utcnow
from callgate.config import Settings
from callgate.domain.agents import create_agent
from callgate.domain.keys import create_key, get_or_create_team
from callgate.runtime import Runtime
from callgate.store.migrate import upgrade_sync
from tests.services import PostgresServer, RedisServer

_counter = itertools.count()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    with PostgresServer() as server:
        yield server


@pytest.fixture(scope="session")
def pg_template(pg_server: PostgresServer) -> str:
    """A database migrated to head once; each test copies it."""
    pg_server.create_database("cg_template")
    upgrade_sync(pg_server.url_for("cg_template"))
    return "cg_template"


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"
    upgrade_sync(f"sqlite+aiosqlite:///{path}")
    return path


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        path = tmp_path / "callgate.db"
        path.write_bytes(template.read_bytes())
        yield f"sqlite+aiosqlite:///{path}"
        return
    pg: PostgresServer = request.getfixturevalue("pg_server")
    name = f"t_{next(_counter)}_{abs(hash(request.node.nodeid)) % 10**8}"
    url = pg.create_database(name, template=request.getfixturevalue("pg_template"))
    yield url
    pg.drop_database(name)


def make_settings(tmp_path: Path, database_url: str, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "data_dir": tmp_path / "data",
        "database_url": database_url,
        "secret_key": "test-secret-key-" + "x" * 32,
        "log_json": False,
        "speech_warmup": False,
        # A loaded test machine's loop lags; admission control is tested on its own (test_admission.py).
        "max_loop_lag_ms": 0,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return make_settings(tmp_path, database_url)


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


@pytest.fixture
async def world(settings: Settings) -> AsyncIterator[World]:
    runtime = Runtime(settings)
    app = create_app(runtime=runtime)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield World(runtime, client)


@pytest.fixture(autouse=True)
async def _no_leaked_tasks() -> AsyncIterator[None]:
    """Every task a test starts must be finished by its end (STYLE habit 11)."""
    before = set(asyncio.all_tasks())
    yield
    await asyncio.sleep(0)
    leaked = [t for t in asyncio.all_tasks() - before if not t.done() and t is not asyncio.current_task()]
    assert not leaked, f"leaked tasks: {leaked}"
