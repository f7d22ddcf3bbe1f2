"""A write that breaks a database constraint is the request's fault (409), not an outage (503), alone or
in a group-committed batch, and the batch's other jobs still commit."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from callgate.clock import utcnow
from callgate.domain.keys import get_or_create_team
from callgate.errors import Conflict
from callgate.store.db import Database
from callgate.store.models import PhoneNumber


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url)
    await database.start()
    try:
        yield database
    finally:
        await database.close()


async def _team(db: Database) -> str:
    now = utcnow()

    async def job(s: AsyncSession) -> str:
        return (await get_or_create_team(s, name="acme", now=now, max_live_calls=5)).id

    return await db.write(job)


def _insert(team_id: str, *, id_: str, number: str, agent_id: str | None = None):  # type: ignore[no-untyped-def]
    now = utcnow()

    async def job(s: AsyncSession) -> str:
        s.add(
            PhoneNumber(
                id=id_, team_id=team_id, number=number, agent_id=agent_id, created_at=now, updated_at=now
            )
        )
        await s.flush()
        return id_

    return job


async def _count(db: Database) -> int:
    async with db.read() as s:
        return int((await s.execute(select(func.count()).select_from(PhoneNumber))).scalar_one())


async def test_a_missing_reference_alone_is_a_conflict(db: Database) -> None:
    team_id = await _team(db)
    with pytest.raises(Conflict):
        await db.write(_insert(team_id, id_="pn_1", number="+15550001111", agent_id="agt_missing"))
    assert await _count(db) == 0


async def test_a_duplicate_in_a_batch_is_a_conflict_and_the_rest_commits(db: Database) -> None:
    team_id = await _team(db)
    # Queued together, so the writer runs them in one transaction, each in its own SAVEPOINT.
    results = await asyncio.gather(
        db.write(_insert(team_id, id_="pn_1", number="+15550001111")),
        db.write(_insert(team_id, id_="pn_2", number="+15550001111")),
        db.write(_insert(team_id, id_="pn_3", number="+15550002222")),
        return_exceptions=True,
    )
    assert results[0] == "pn_1" and results[2] == "pn_3", results
    assert isinstance(results[1], Conflict), results
    assert await _count(db) == 2
