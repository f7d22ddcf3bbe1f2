"""Engines, sessions and the group-commit write path.

Reads use a pooled session (``Database.read``). Writes go through :class:`Database.write`: jobs are
queued to one writer task that runs as many as are waiting in a single transaction, each inside its
own SAVEPOINT, and commits once. On SQLite this removes write-lock contention (one writer, one fsync
per batch, ``BEGIN IMMEDIATE``); on PostgreSQL it saves round trips and commits. A job's result is
returned only after its transaction committed, so callers never see unpersisted state. A batch of one
job runs without the SAVEPOINT (its transaction plays that part).

:meth:`Database.write_many` is for the hot, uniform writes (creating calls): items given to the same
:data:`ManyJob` that wait together are handed to it in *one* call, which can check them with one query
and insert them with one statement per table. Such a job refuses items by returning their error
(before writing anything for them); if the database refuses the group as a whole (a constraint broken
by a race), each item is tried again on its own so that one item's failure never fails the others.

On SQLite the writer's connection runs its statements on the event loop instead of aiosqlite's thread
(:mod:`callgate.store.inloop_sqlite`; only ``BEGIN``/``COMMIT`` leave the loop); reads stay on aiosqlite.
PostgreSQL (asyncpg) is unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from callgate.errors import CallgateError, Conflict, ServiceUnavailable
from callgate.store import inloop_sqlite

log = logging.getLogger(__name__)

T = TypeVar("T")
Item = TypeVar("Item")
Job = Callable[[AsyncSession], Awaitable[T]]
ManyJob = Callable[[AsyncSession, list[Item]], Awaitable[list[T | CallgateError]]]
"""Writes ``items`` (in the order given) and returns, for each, its result or the error refusing it.
It must write nothing for a refused item, and be safe to run again on a subset of the items (it is,
when the database refused a group)."""

MAX_BATCH = 256


def use_wal(database: str, *, attempts: int = 50) -> None:
    """Put the SQLite file ``database`` in WAL mode (it stays so; a no-op when it already is).

    The switch from a rollback journal needs the file's exclusive lock, and SQLite refuses it at once,
    without waiting on ``busy_timeout``, when another connection holding a shared lock wants to switch
    too (the deadlock rule). Every pooled connection asks for WAL on connect, so the first start on a
    freshly migrated file made several connections race for the switch and one of them failed with
    "database is locked". Switching once, before any pooled connection exists, and retrying the
    immediate refusal, removes the race.
    """
    for attempt in range(attempts):
        conn = sqlite3.connect(database, timeout=30, isolation_level=None)
        try:
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()
            if mode and str(mode[0]).lower() == "wal":
                return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == attempts - 1:
                raise
        finally:
            conn.close()
        time.sleep(0.02 * (attempt + 1))


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


@dataclass(frozen=True, slots=True)
class _Many(Generic[Item, T]):
    """An item queued for a :data:`ManyJob` (stands in the queue where a plain job would)."""

    job: ManyJob[Item, T]
    item: Item


_Entry = tuple[Job[Any] | _Many[Any, Any], asyncio.Future[Any]]
_Outcome = tuple[asyncio.Future[Any], bool, Any]


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
        self._queue: asyncio.Queue[_Entry] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None

    @property
    def dialect(self) -> str:
        return self.read_engine.dialect.name

    async def start(self) -> None:
        database = make_url(self.url).database
        if self.is_sqlite and database and database != ":memory:" and not make_url(self.url).query:
            await asyncio.to_thread(use_wal, database)
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

    async def write_many(self, job: ManyJob[Item, T], item: Item) -> T:
        """Write ``item`` with ``job``, together with the other items of ``job`` waiting now (one call
        of ``job`` for all of them, in the next group commit); its result once durable."""
        if self._writer is None:
            raise ServiceUnavailable("the database writer is not running")
        fut: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((_Many(job, item), fut))
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

    async def _run_batch(self, batch: list[_Entry]) -> None:
        units = _units(batch)
        if len(units) == 1:
            await self._run_one(units[0])
            return
        outcomes: list[_Outcome] = []
        try:
            async with self._write_sessions() as session, session.begin():
                for unit in units:
                    outcomes += await self._run_nested(session, unit)
        except SQLAlchemyError as exc:
            log.exception("database commit failed")
            _fail(_futures(units), _unavailable(exc))
            return
        except Exception as exc:  # a bug in a job: fail that batch, keep the writer alive
            log.exception("database writer batch crashed")
            _fail(_futures(units), exc)
            return
        _settle(outcomes)

    async def _run_nested(self, session: AsyncSession, unit: _Unit) -> list[_Outcome]:
        """One unit of a batch in its own SAVEPOINT: a failure rolls back that unit's writes only."""
        if isinstance(unit, _Group):
            try:
                async with session.begin_nested():
                    values = await unit.job(session, unit.items)
            except SQLAlchemyError as exc:
                if len(unit.entries) > 1:  # one item broke the group: each on its own
                    return [o for one in unit.split() for o in await self._run_nested(session, one)]
                return [(unit.entries[0][1], False, _refusal(exc))]
            except (CallgateError, ValueError) as exc:
                return [(fut, False, exc) for _, fut in unit.entries]
            return unit.outcomes(values)
        job, fut = unit
        try:
            async with session.begin_nested():
                value = await job(session)
        except (CallgateError, ValueError, SQLAlchemyError) as exc:
            return [(fut, False, _refusal(exc))]
        return [(fut, True, value)]

    async def _run_one(self, unit: _Unit) -> None:
        """A batch of one unit: its own transaction is its SAVEPOINT (two statements fewer).

        Same outcomes as in a batch: a job's refusal rolls its writes back and is raised to its caller.
        """
        futures = _futures([unit])
        retry: list[_Unit] = []
        try:
            async with self._write_sessions() as session:
                try:
                    if isinstance(unit, _Group):
                        outcomes = unit.outcomes(await unit.job(session, unit.items))
                    else:
                        outcomes = [(unit[1], True, await unit[0](session))]
                except (CallgateError, ValueError, SQLAlchemyError) as exc:
                    await session.rollback()
                    if (
                        isinstance(exc, SQLAlchemyError)
                        and isinstance(unit, _Group)
                        and len(unit.entries) > 1
                    ):
                        retry = unit.split()  # one item broke the group: each on its own
                        outcomes = []
                    else:
                        outcomes = [(fut, False, _refusal(exc)) for fut in futures]
                else:
                    await session.commit()
        except SQLAlchemyError as exc:
            log.exception("database commit failed")
            _fail(futures, _unavailable(exc))
            return
        except Exception as exc:  # a bug in the job: fail it, keep the writer alive
            log.exception("database writer batch crashed")
            _fail(futures, exc)
            return
        _settle(outcomes)
        for one in retry:
            await self._run_one(one)


@dataclass(frozen=True, slots=True)
class _Group(Generic[Item, T]):
    """The items of one :data:`ManyJob` in a batch, run by one call of it."""

    job: ManyJob[Item, T]
    entries: list[tuple[Item, asyncio.Future[Any]]]

    @property
    def items(self) -> list[Item]:
        return [item for item, _ in self.entries]

    def outcomes(self, values: list[T | CallgateError]) -> list[_Outcome]:
        return [
            (fut, not isinstance(value, CallgateError), value)
            for (_, fut), value in zip(self.entries, values, strict=True)
        ]

    def split(self) -> list[_Unit]:
        return [_Group(self.job, [entry]) for entry in self.entries]


_Unit = tuple[Job[Any], asyncio.Future[Any]] | _Group[Any, Any]


def _units(batch: list[_Entry]) -> list[_Unit]:
    """The batch's jobs in order; the items of each :data:`ManyJob` gathered where it first appears."""
    units: list[_Unit] = []
    groups: dict[Any, _Group[Any, Any]] = {}
    for job, fut in batch:
        if fut.cancelled():
            continue
        if isinstance(job, _Many):
            if (group := groups.get(job.job)) is None:
                group = groups[job.job] = _Group(job.job, [])
                units.append(group)
            group.entries.append((job.item, fut))
        else:
            units.append((job, fut))
    return units


def _futures(units: list[_Unit]) -> list[asyncio.Future[Any]]:
    return [fut for u in units for fut in ([f for _, f in u.entries] if isinstance(u, _Group) else [u[1]])]


def _refusal(exc: Exception) -> Exception:
    """What the caller of a failed job gets: our errors as they are, a broken constraint as a 409,
    anything else from the database as a 503."""
    if isinstance(exc, IntegrityError):
        return _conflict(exc)
    if isinstance(exc, SQLAlchemyError):
        log.error("database write job failed", exc_info=exc)
        return ServiceUnavailable("the database write failed")
    return exc


def _unavailable(exc: SQLAlchemyError) -> ServiceUnavailable:
    error = ServiceUnavailable("the database is not available")
    error.__cause__ = exc
    return error


def _fail(futures: list[asyncio.Future[Any]], error: BaseException) -> None:
    for fut in futures:
        if not fut.done():
            fut.set_exception(error)


def _settle(outcomes: list[_Outcome]) -> None:
    for fut, ok, value in outcomes:
        if fut.done():
            continue
        if ok:
            fut.set_result(value)
        else:
            fut.set_exception(value)
