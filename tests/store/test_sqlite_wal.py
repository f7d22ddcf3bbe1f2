"""A SQLite file is put in WAL mode once, before any pooled connection: several connections switching
a fresh file at once made one of them fail at once with "database is locked" (SQLite's deadlock rule
does not wait on busy_timeout), which failed the first write of a node, or of a second node, on a
freshly migrated file."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from callgate.store.db import Database
from callgate.store.migrate import upgrade_sync


def _journal_mode_in_header(path: Path) -> str:
    """The file's own record of its journal (bytes 18-19 of the header: 2 is WAL, 1 is a rollback
    journal), read without opening a SQLite connection."""
    return "wal" if path.read_bytes()[18:20] == b"\x02\x02" else "rollback"


def _rollback_file(path: Path) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=DELETE")
    conn.execute("CREATE TABLE marks (node INTEGER, n INTEGER)")
    conn.close()


def test_a_migrated_file_is_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "fresh.db"
    upgrade_sync(f"sqlite+aiosqlite:///{path}")
    assert _journal_mode_in_header(path) == "wal"


async def test_nodes_starting_together_on_a_rollback_file_all_write(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    _rollback_file(path)
    assert _journal_mode_in_header(path) == "rollback"
    nodes = [Database(f"sqlite+aiosqlite:///{path}") for _ in range(4)]
    await asyncio.gather(*(db.start() for db in nodes))
    # Switched by start(), before any of the nodes' pooled connections was opened.
    assert _journal_mode_in_header(path) == "wal"
    try:

        def mark(node: int, n: int):  # type: ignore[no-untyped-def]
            async def job(s: AsyncSession) -> None:
                await s.execute(text("INSERT INTO marks VALUES (:node, :n)"), {"node": node, "n": n})

            return job

        await asyncio.gather(*(db.write(mark(i, n)) for n in range(20) for i, db in enumerate(nodes)))
        async with nodes[0].read() as s:
            count = (await s.execute(text("SELECT count(*) FROM marks"))).scalar_one()
        assert count == 80
    finally:
        for db in nodes:
            await db.close()
