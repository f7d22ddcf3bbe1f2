"""Migrations: upgrade from an empty database on both engines, the models match the migrations (no
autogenerate diff), and downgrade/upgrade round-trips."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from callgate.store.migrate import alembic_config, upgrade
from callgate.store.schema import metadata
from tests.support.services import PostgresServer

_names = itertools.count()
TABLES = {
    "team",
    "api_key",
    "agent",
    "contact",
    "phone_number",
    "call",
    "call_event",
    "transcript_turn",
    "used_token",
    "team_credit",
    "phone_call",
    "vocode_agent",
    "webhook_endpoint",
    "webhook_signing_secret",
    "webhook_event",
    "webhook_delivery",
    "webhook_attempt",
    "analysis_plan",
    "analysis_job",
    "carrier",
    "user_account",
    "user_session",
    "user_invite",
    "provider_credential",
}


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database with nothing in it (not a copy of the migrated template)."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"
        return
    pg: PostgresServer = request.getfixturevalue("pg_server")
    name = f"empty_{next(_names)}"
    yield pg.create_database(name)
    pg.drop_database(name)


def _diff(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(
        connection,
        opts={"compare_type": True, "render_as_batch": connection.dialect.name == "sqlite"},
    )
    return list(compare_metadata(context, metadata))


def _state(connection: Connection) -> tuple[set[str], set[str]]:
    """The revisions the database is at (one per branch), and its tables."""
    revisions = set(MigrationContext.configure(connection).get_current_heads())
    return revisions, set(inspect(connection).get_table_names())


async def run_sync(url: str, fn: Any, *args: Any) -> Any:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(fn, *args)
    finally:
        await engine.dispose()


def heads() -> set[str]:
    """Every branch's head (an area with tables of its own has its own branch)."""
    revisions = set(ScriptDirectory.from_config(alembic_config("sqlite://")).get_heads())
    assert revisions
    return revisions


async def test_upgrade_from_empty_matches_the_models(empty_database: str) -> None:
    assert await run_sync(empty_database, _state) == (set(), set())
    await upgrade(empty_database)
    revisions, tables = await run_sync(empty_database, _state)
    assert revisions == heads()
    assert tables >= TABLES
    assert tables - {"alembic_version"} == set(metadata.tables)
    assert await run_sync(empty_database, _diff) == []


async def test_upgrade_is_idempotent_and_downgrade_round_trips(empty_database: str) -> None:
    await upgrade(empty_database)
    await upgrade(empty_database)  # already at head: nothing to do, no error

    def downgrade(connection: Connection) -> None:
        cfg = alembic_config(empty_database)
        cfg.attributes["connection"] = connection
        command.downgrade(cfg, "base")

    engine = create_async_engine(empty_database)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(downgrade)
    finally:
        await engine.dispose()
    revisions, tables = await run_sync(empty_database, _state)
    assert revisions == set() and tables <= {"alembic_version"}

    await upgrade(empty_database)
    assert await run_sync(empty_database, _diff) == []


async def test_nodes_starting_together_migrate_and_seed_once(pg_server: PostgresServer) -> None:
    """Three ``callgate serve`` on an empty PostgreSQL at the same moment: every one starts, one seeds."""
    from callgate.clock import utcnow
    from callgate.domain.bootstrap import bootstrap
    from callgate.store.db import Database

    name = f"together_{next(_names)}"
    url = pg_server.create_database(name)
    try:
        async with asyncio.timeout(60):
            await asyncio.gather(*(upgrade(url) for _ in range(3)))
        assert (await run_sync(url, _state))[0] == heads()
        dbs = [Database(url) for _ in range(3)]
        for db in dbs:
            await db.start()
        try:
            seeded = await asyncio.gather(
                *(db.write(lambda s: bootstrap(s, now=utcnow(), max_live_calls=5)) for db in dbs)
            )
        finally:
            for db in dbs:
                await db.close()
        assert sorted(b.created for b in seeded) == [False, False, True]
        assert len({b.team_id for b in seeded}) == 1
    finally:
        pg_server.drop_database(name)
