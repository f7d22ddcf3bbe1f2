"""API fixtures: a second team, and worlds built on other settings over the same database."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import httpx
import pytest

from callgate.app import create_app
from callgate.config import Settings
from callgate.runtime import Runtime
from tests.conftest import World, make_settings


@asynccontextmanager
async def open_world(settings: Settings) -> AsyncIterator[World]:
    """The app on ``settings``, started, with a client on it (what the ``world`` fixture does)."""
    runtime = Runtime(settings)
    app = create_app(runtime=runtime)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield World(runtime, client)


WorldFactory = Callable[..., AbstractAsyncContextManager[World]]


@pytest.fixture
def world_with(tmp_path: Path, database_url: str) -> WorldFactory:
    """``async with world_with(redis_url=...) as w:`` — a world whose settings are overridden."""

    def make(**overrides: object) -> AbstractAsyncContextManager[World]:
        return open_world(make_settings(tmp_path, database_url, **overrides))

    return make
