"""Run Alembic migrations programmatically (``callgate db upgrade`` and ``serve``)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from callgate.store import locks
from callgate.store.db import use_wal

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def _upgrade(connection: Connection, url: str, revision: str) -> None:
    cfg = alembic_config(url)
    cfg.attributes["connection"] = connection
    command.upgrade(cfg, revision)


async def upgrade(url: str, revision: str = "heads") -> None:
    """Migrate the database at ``url`` to ``revision``. Several processes may do it at once: one
    migrates, the others wait and then find nothing to do (PostgreSQL's DDL is transactional)."""
    if url.startswith("sqlite"):
        from sqlalchemy.engine import make_url

        db = make_url(url).database
        if db and db != ":memory:":
            Path(db).parent.mkdir(parents=True, exist_ok=True)
            await asyncio.to_thread(use_wal, db)
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            await locks.hold(conn, locks.SETUP)
            await conn.run_sync(_upgrade, url, revision)
    finally:
        await engine.dispose()


def upgrade_sync(url: str, revision: str = "heads") -> None:
    asyncio.run(upgrade(url, revision))
