"""An aiosqlite-shaped SQLite connection that runs statements on the event loop (the writer's engine).

aiosqlite hands every statement (and every fetch) to its own thread and back: for the group-commit
writer, which runs ~10 short statements per created call, those hand-offs cost more than the SQLite
work itself. This shim gives SQLAlchemy's aiosqlite dialect (``create_async_engine(...,
async_creator=...)``) a connection whose statements run directly in the event-loop thread.

Only statements that can *wait* leave the loop: ``BEGIN`` (``BEGIN IMMEDIATE`` waits up to
``busy_timeout`` for another process's write lock), ``COMMIT`` (a WAL auto-checkpoint, which may fsync,
runs inside it) and ``PRAGMA`` (connection set-up; ``journal_mode`` may take a lock). They run on one
thread per connection, so a batch costs two thread hand-offs instead of two per statement. Once a
transaction holds SQLite's write lock (``BEGIN IMMEDIATE``), the statements inside it do not wait on
other connections in WAL mode, so running them on the loop cannot stall it on a lock; a very large
statement still occupies the loop for its duration, as any in-process work does.

The WAL auto-checkpoint is left at SQLite's default (1,000 pages): it runs inside ``COMMIT``, which is
off the loop.

Use it only for the single writer connection: it must not be shared by concurrent tasks (SQLAlchemy's
pool gives a connection to one session at a time).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import sqlite3
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

__all__ = ["InLoopConnection", "connect"]

T = TypeVar("T")

_OFF_LOOP = ("BEGIN", "COMMIT", "END", "PRAGMA", "VACUUM")


def _waits(sql: str) -> bool:
    return sql.lstrip()[:6].upper().startswith(_OFF_LOOP)


class _Cursor:
    """The subset of ``aiosqlite.Cursor`` SQLAlchemy's adapter uses."""

    __slots__ = ("_cur", "_owner")

    def __init__(self, owner: InLoopConnection, cur: sqlite3.Cursor) -> None:
        self._owner = owner
        self._cur = cur

    async def __aenter__(self) -> _Cursor:
        return self

    async def __aexit__(self, *_: object) -> None:
        self._cur.close()

    async def execute(self, sql: str, parameters: Any = None) -> _Cursor:
        params = () if parameters is None else parameters
        if _waits(sql):
            await self._owner.off_loop(lambda: self._cur.execute(sql, params))
        else:
            await self._owner.settle()
            self._cur.execute(sql, params)
        return self

    async def executemany(self, sql: str, seq_of_parameters: Iterable[Any]) -> _Cursor:
        await self._owner.settle()
        self._cur.executemany(sql, seq_of_parameters)
        return self

    async def fetchall(self) -> list[Any]:
        return self._cur.fetchall()

    async def fetchone(self) -> Any:
        return self._cur.fetchone()

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        return self._cur.fetchmany(size) if size is not None else self._cur.fetchmany()

    async def close(self) -> None:
        self._cur.close()

    async def nextset(self) -> None:
        return None

    async def setinputsizes(self, *_: Any) -> None:
        return None

    @property
    def description(self) -> Any:
        return self._cur.description

    @property
    def rowcount(self) -> int:
        return self._cur.rowcount

    @property
    def lastrowid(self) -> int | None:
        return self._cur.lastrowid

    @property
    def arraysize(self) -> int:
        return self._cur.arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._cur.arraysize = value


class _Tx:
    """Stands in for aiosqlite's request queue (SQLAlchemy sets ``isolation_level`` through it)."""

    __slots__ = ()

    def put_nowait(self, item: tuple[asyncio.Future[Any], Callable[[], Any]]) -> None:
        future, function = item
        try:
            future.set_result(function())
        except Exception as exc:  # handed to the awaiting caller
            future.set_exception(exc)


class InLoopConnection:
    """The subset of ``aiosqlite.Connection`` SQLAlchemy's aiosqlite dialect uses.

    A task cancelled while a statement runs on the thread leaves that statement running: every later use
    of the connection on the loop (a rollback, a close) first waits for it (:meth:`settle`), as two
    threads must never use one sqlite3 connection at once.
    """

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._connection: sqlite3.Connection | None = conn
        self._tx = _Tx()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-writer")
        self._inflight: concurrent.futures.Future[Any] | None = None

    async def off_loop(self, fn: Callable[[], T]) -> T:
        await self.settle()
        work = self._pool.submit(fn)
        self._inflight = work
        return await asyncio.wrap_future(work)

    async def settle(self) -> None:
        """Wait until no statement of this connection runs on its thread."""
        work = self._inflight
        if work is not None and not work.done():
            await asyncio.wait([asyncio.wrap_future(work)])
        self._inflight = None

    @property
    def isolation_level(self) -> str | None:
        return self._conn.isolation_level

    def cursor(self) -> _Cursor:
        return _Cursor(self, self._conn.cursor())

    async def execute(self, sql: str, parameters: Any = None) -> _Cursor:
        return await self.cursor().execute(sql, parameters)

    async def create_function(self, *args: Any, **kwargs: Any) -> None:
        self._conn.create_function(*args, **kwargs)

    async def commit(self) -> None:
        await self.off_loop(self._conn.commit)

    async def rollback(self) -> None:
        await self.settle()
        self._conn.rollback()

    async def close(self) -> None:
        await self.settle()
        if self._connection is not None:
            self._connection = None
            self._conn.close()
            self._pool.shutdown(wait=False)

    def stop(self) -> None:
        """Force close (SQLAlchemy's terminate): queued behind a statement still running, if any."""
        if self._connection is not None:
            self._connection = None
            self._pool.submit(self._conn.close)
            self._pool.shutdown(wait=False)


async def connect(database: str, *, lock_wait_s: float) -> InLoopConnection:
    """Open ``database`` (a path or ``:memory:``); the connect runs off the loop."""
    loop = asyncio.get_running_loop()
    conn = await loop.run_in_executor(
        None, lambda: sqlite3.connect(database, timeout=lock_wait_s, check_same_thread=False)
    )
    return InLoopConnection(conn)
