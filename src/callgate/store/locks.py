"""Database-wide locks for work several nodes may start at the same moment.

Nodes started together on an empty PostgreSQL database (``docker compose up``, systemd at boot) would
otherwise all run the migrations and all seed the first team: the losers fail on duplicate tables or
names and the node exits. :data:`SETUP` serialises that first-start work; whoever comes second finds it
done. SQLite takes no lock here: it serves a single node.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

SETUP = int.from_bytes(b"callgate", "big")
"""Migrations and first-start seeding (any fixed 64-bit key; this one spells "callgate")."""


async def hold(db: AsyncConnection | AsyncSession, key: int) -> None:
    """Wait for and hold the lock ``key`` until the current transaction ends (a PostgreSQL
    transaction-level advisory lock; nothing on other databases)."""
    dialect = db.dialect if isinstance(db, AsyncConnection) else db.get_bind().dialect
    if dialect.name == "postgresql":
        await db.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
