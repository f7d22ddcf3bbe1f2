"""The test services start on their own ports, answer, and leave nothing behind."""

from __future__ import annotations

import socket

import asyncpg
import pytest
import redis.asyncio as redis_asyncio
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tests.support.services import PostgresServer, RedisServer, free_port


def _accepts_connections(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def test_free_port_is_bindable() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


async def test_postgres_starts_answers_and_stops() -> None:
    with PostgresServer() as pg:
        assert pg.port != 5432
        conn = await asyncpg.connect(pg.dsn)
        try:
            assert await conn.fetchval("SELECT 1") == 1
            assert await conn.fetchval("SHOW fsync") == "off"
        finally:
            await conn.close()
        directory, port = pg.dir, pg.port

    assert not directory.exists()
    assert not _accepts_connections(port)


async def test_postgres_databases_from_template() -> None:
    with PostgresServer() as pg:
        pg.create_database("tmpl")
        pg.execute("CREATE TABLE seeded (id int PRIMARY KEY); INSERT INTO seeded VALUES (7)", database="tmpl")

        url = pg.create_database("copy", template="tmpl")
        assert url == pg.url_for("copy")
        engine = create_async_engine(url)
        try:
            async with engine.connect() as conn:
                assert (await conn.execute(text("SELECT id FROM seeded"))).scalar_one() == 7
            # An open pooled connection must not block the drop.
            pg.drop_database("copy")
        finally:
            await engine.dispose()
        assert pg.execute("SELECT count(*) FROM pg_database WHERE datname = 'copy'").strip() == "0"


def test_postgres_rejects_unsafe_database_names() -> None:
    with PostgresServer() as pg, pytest.raises(ValueError):
        pg.create_database('x"; DROP DATABASE postgres; --')


async def test_redis_starts_answers_and_stops() -> None:
    with RedisServer() as server:
        assert server.port != 6379
        client = redis_asyncio.from_url(server.url)
        try:
            assert await client.ping() is True
            await client.set("k", "v")
            assert await client.get("k") == b"v"
        finally:
            await client.aclose()
        directory, port = server.dir, server.port

    assert not directory.exists()
    assert not _accepts_connections(port)
