"""Pipeline tests run on virtual time and must leave no task behind."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest


@pytest.fixture(autouse=True)
async def _pipeline_tasks_finished() -> AsyncIterator[None]:
    """Fail a test that leaves an asyncio task running (STYLE habit 11); cancel the leftovers so one
    leak does not cascade into the next test."""
    before = set(asyncio.all_tasks())
    yield
    await asyncio.sleep(0)
    me = asyncio.current_task()
    leaked = [t for t in asyncio.all_tasks() - before if not t.done() and t is not me]
    for task in leaked:
        task.cancel()
    if leaked:
        await asyncio.wait(leaked)
    assert not leaked, f"leaked tasks: {[t.get_name() for t in leaked]}"
