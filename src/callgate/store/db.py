"""Engines, sessions and the group-commit write path.

Reads use a pooled session (``Database.read``). Writes go through :class:`Database.write`: jobs are
queued to one writer task that runs as many as are waiting in a single transaction, each inside its
own SAVEPOINT, and commits once. On SQLite this removes write-lock contention (one writer, one fsync
per batch, ``BEGIN IMMEDIATE``); on PostgreSQL it saves round trips and commits. A job's result is
returned only after its transaction committed, so callers never see unpersisted state. A batch of one
job runs without the SAVEPOINT (its transaction plays that part).

On SQLite the writer's connection runs its statements on the event loop instead of aiosqlite's thread
(:mod:`callgate.store.inloop_sqlite`; only ``BEGIN``/``COMMIT`` leave the loop); reads stay on aiosqlite.
PostgreSQL (asyncpg) is unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from callgate.errors import CallgateError, Conflict, ServiceUnavailable
from callgate.store import inloop_sqlite

log = logging.getLogger(__name__)

T = TypeVar("T")
Job = Callable[[AsyncSession], Awaitable[T]]

MAX_BATCH = 256


def _sqlite_engine(url: str, *, immediate: bool, pool_size: int, in_loop: bool = False) -> AsyncEngine:
    parsed = make_url(url)
    if in_loop and parsed.database and not parsed.query:
        # The writer: statements run on the event loop (see callgate.store.inloop_sqlite).
        database = parsed.database
        engine = create_async_engine(
            url,
            pool_size=pool_size,
            max_overflow=0,
            async_creator=lambda: inloop_sqlite.connect(database, lock_wait_s=30),
        )
    else:
        engine = create_async_engine(url, pool_size=pool_size, max_overflow=0, connect_args={"timeout": 30})

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Take transaction control away from the driver so SAVEPOINT and BEGIN IMMEDIATE work.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def _conflict(exc: IntegrityError) -> Conflict:
    """A constraint the write broke (a duplicate, or a reference to a row that is not there) is the
    request's fault, not an outage: a 409. Domain functions check what they can first, with clearer
    messages; this is the backstop (e.g. a race between two requests)."""
    log.warning("database write refused by a constraint: %s", exc.orig)
    error = Conflict("the change conflicts with existing data (a duplicate, or a missing referenced object)")
    error.__cause__ = exc
    return error


class Database:
    """Owns the engines and the writer task. Create with :meth:`open`, release with :meth:`close`."""

    def __init__(self, url: str) -> None:
        self.url = url
        parsed = make_url(url)
        self.is_sqlite = parsed.get_backend_name() == "sqlite"
        if self.is_sqlite:
            if parsed.database and parsed.database != ":memory:":
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            self.read_engine = _sqlite_engine(url, immediate=False, pool_size=4)
            self.write_engine = _sqlite_engine(url, immediate=True, pool_size=1, in_loop=True)
        else:
            self.read_engine = create_async_engine(url, pool_size=10, max_overflow=10, pool_pre_ping=True)
            self.write_engine = self.read_engine
        self._read_sessions = async_sessionmaker(self.read_engine, expire_on_commit=False)
        self._write_sessions = async_sessionmaker(self.write_engine, expire_on_commit=False)
        self._queue: asyncio.Queue[tuple[Job[Any], asyncio.Future[Any]]] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None

    @property
    def dialect(self) -> str:
        return self.read_engine.dialect.name

    async def start(self) -> None:
        if self._writer is None:
            self._writer = asyncio.create_task(self._write_loop(), name="db-writer")

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
            self._writer = None
        while not self._queue.empty():
            _, fut = self._queue.get_nowait()
            if not fut.done():
                fut.set_exception(ServiceUnavailable("the database is shutting down"))
        await self.read_engine.dispose()
        if self.write_engine is not self.read_engine:
            await self.write_engine.dispose()

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        try:
            async with self._read_sessions() as session:
                yield session
        except SQLAlchemyError as exc:
            log.exception("database read failed")
            raise ServiceUnavailable("the database is not available") from exc

    async def write(self, job: Job[T]) -> T:
        """Run ``job`` in the next group-committed transaction and return its result once durable."""
        if self._writer is None:
            raise ServiceUnavailable("the database writer is not running")
        fut: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((job, fut))
        return await fut

    async def ping(self) -> bool:
        try:
            async with self.read_engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
            return True
        except (SQLAlchemyError, OSError):
            return False

    async def _write_loop(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < MAX_BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            await self._run_batch(batch)

    async def _run_batch(self, batch: list[tuple[Job[Any], asyncio.Future[Any]]]) -> None:
        live = [item for item in batch if not item[1].cancelled()]
        if len(live) == 1:
            await self._run_one(*live[0])
            return
        results: list[tuple[asyncio.Future[Any], bool, Any]] = []
        try:
            async with self._write_sessions() as session, session.begin():
                for job, fut in batch:
                    if fut.cancelled():
                        continue
                    try:
                        async with session.begin_nested():
                            value = await job(session)
                        results.append((fut, True, value))
                    except (CallgateError, ValueError) as exc:
                        results.append((fut, False, exc))
                    except IntegrityError as exc:
                        results.append((fut, False, _conflict(exc)))
                    except SQLAlchemyError as exc:
                        log.exception("database write job failed")
                        results.append((fut, False, ServiceUnavailable("the database write failed")))
                        del exc
        except SQLAlchemyError as exc:
            log.exception("database commit failed")
            error = ServiceUnavailable("the database is not available")
            error.__cause__ = exc
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(error)
            return
        except Exception as exc:  # a bug in a job: fail that batch, keep the writer alive
            log.exception("database writer batch crashed")
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(exc)
            return
        for fut, ok, value in results:
            if fut.done():
                continue
            if ok:
                fut.set_result(value)
            else:
                fut.set_exception(value)

    async def _run_one(self, job: Job[Any], fut: asyncio.Future[Any]) -> None:
        """A batch of one job: its own transaction is its SAVEPOINT (two statements fewer).

        Same outcomes as in a batch: a job's refusal rolls its writes back and is raised to its caller.
        """

        def fail(error: BaseException) -> None:
            if not fut.done():
                fut.set_exception(error)

        try:
            async with self._write_sessions() as session:
                try:
                    value = await job(session)
                except (CallgateError, ValueError) as exc:
                    await session.rollback()
                    fail(exc)
                    return
                except IntegrityError as exc:
                    await session.rollback()
                    fail(_conflict(exc))
                    return
                except SQLAlchemyError:
                    log.exception("database write job failed")
                    await session.rollback()
                    fail(ServiceUnavailable("the database write failed"))
                    return
                await session.commit()
        except SQLAlchemyError as exc:
            log.exception("database commit failed")
            error = ServiceUnavailable("the database is not available")
            error.__cause__ = exc
            fail(error)
            return
        except Exception as exc:  # a bug in the job: fail it, keep the writer alive
            log.exception("database writer batch crashed")
            fail(exc)
            return
        if not fut.done():
            fut.set_result(value)
