"""Every shared fixture, in one place: real SQLite and PostgreSQL databases, a real Redis, the app
in-process (``world``) or on a real server (``live``), a webhook receiver and a fake OpenAI server.
Helpers these fixtures hand out live in ``tests/support/``."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import pytest

from callgate.config import Settings
from callgate.store.migrate import upgrade_sync
from tests.support.fake_anthropic import fake_anthropic  # noqa: F401 - fixtures
from tests.support.fake_openai import fake_openai, openai_server  # noqa: F401 - fixtures
from tests.support.fake_speech_vendors import (  # noqa: F401 - fixtures
    fake_cartesia,
    fake_deepgram,
    fake_elevenlabs,
    fake_openai_audio,
)
from tests.support.live import LiveServer, serve
from tests.support.receiver import Receiver
from tests.support.s3 import S3Server
from tests.support.services import PostgresServer, RedisServer
from tests.support.world import World, WorldFactory, make_settings, open_world

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


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    """Settings a folder's tests run on (a conftest there may override this fixture)."""
    return {}


@pytest.fixture
def settings(tmp_path: Path, database_url: str, settings_overrides: dict[str, object]) -> Settings:
    return make_settings(tmp_path, database_url, **settings_overrides)


@pytest.fixture
async def world(settings: Settings) -> AsyncIterator[World]:
    async with open_world(settings) as w:
        yield w


@pytest.fixture
def world_with(tmp_path: Path, database_url: str, settings_overrides: dict[str, object]) -> WorldFactory:
    """``async with world_with(redis_url=...) as w:`` — a world (another node) on the same database."""

    def make(**overrides: object) -> AbstractAsyncContextManager[World]:
        return open_world(make_settings(tmp_path, database_url, **{**settings_overrides, **overrides}))

    return make


@pytest.fixture
def live_settings(tmp_path: Path, sqlite_template: Path) -> Settings:
    path = tmp_path / "callgate.db"
    path.write_bytes(sqlite_template.read_bytes())
    return make_settings(tmp_path, f"sqlite+aiosqlite:///{path}", public_url=None)


@pytest.fixture
async def live(live_settings: Settings) -> AsyncIterator[LiveServer]:
    async for server in serve(live_settings):
        yield server


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """A local S3-compatible server (moto); each test makes its own bucket (``s3_server.new_bucket()``)."""
    with S3Server() as server:
        yield server


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    r.start()
    yield r
    r.stop()


@pytest.fixture(autouse=True)
async def _no_leaked_tasks() -> AsyncIterator[None]:
    """Every task a test starts must be finished by its end (STYLE habit 11)."""
    before = set(asyncio.all_tasks())
    yield
    await asyncio.sleep(0)
    leaked = [t for t in asyncio.all_tasks() - before if not t.done() and t is not asyncio.current_task()]
    assert not leaked, f"leaked tasks: {leaked}"
