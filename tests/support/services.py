"""Real PostgreSQL and Redis servers for the test session.

Each server runs from the installed binaries in its own temporary directory, on a free port on 127.0.0.1,
so the suite behaves the same on a fresh machine and on one where these services already run on their
default ports. Both are context managers; a server still running when the interpreter exits (a crashed or
interrupted session) is stopped by an ``atexit`` hook.

    with PostgresServer() as pg, RedisServer() as redis:
        pg.create_database("t1", template="tmpl")
        engine = create_async_engine(pg.url_for("t1"))
        client = redis_asyncio.from_url(redis.url)
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Self

__all__ = ["PostgresServer", "RedisServer", "ServiceError", "find_postgres_bin_dir", "free_port"]

_START_TIMEOUT = 60.0
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


class ServiceError(RuntimeError):
    """A test service could not be found, started or used."""


def worker_port_offset() -> int:
    """How far fixed port ranges (RTP for baresip and for callgate in the telephony tests) move for this
    pytest-xdist worker (gw0: 0, gw1: 2,000, ...), so that workers running side by side never share one.
    baresip binds its RTP ports with SO_REUSEADDR: two phones on one port split each other's audio."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    return int(worker[2:]) * 2000 if worker.startswith("gw") and worker[2:].isdigit() else 0


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _version_key(path: Path) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", path.parent.name)) or (0,)


def find_postgres_bin_dir() -> Path:
    """Directory holding ``initdb`` and ``pg_ctl``: ``$CALLGATE_PG_BIN``, Debian's newest, or ``PATH``."""
    override = os.environ.get("CALLGATE_PG_BIN")
    candidates = [Path(override)] if override else []
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=_version_key, reverse=True)
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    for directory in candidates:
        if (directory / "initdb").is_file() and (directory / "pg_ctl").is_file():
            return directory
    raise ServiceError(
        "PostgreSQL server binaries (initdb, pg_ctl) not found; install them with "
        "`apt-get install postgresql` (./scripts/test.sh does) or set CALLGATE_PG_BIN"
    )


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _quote_identifier(name: str) -> str:
    if not _IDENTIFIER.fullmatch(name):
        raise ValueError(f"not a plain SQL identifier: {name!r}")
    return f'"{name}"'


class _Service:
    """Start/stop bookkeeping shared by the servers: context manager, atexit, temp dir."""

    _prefix = "callgate-service-"

    def __init__(self) -> None:
        self.port = 0
        self._dir: Path | None = None

    @property
    def dir(self) -> Path:
        """The server's temporary directory (data, socket, log); removed on stop."""
        if self._dir is None:
            raise ServiceError(f"{type(self).__name__} is not running")
        return self._dir

    def start(self) -> Self:
        """Start the server and wait until it answers; retries on a port taken meanwhile."""
        if self._dir is not None:
            return self
        self._dir = Path(tempfile.mkdtemp(prefix=self._prefix))
        atexit.register(self.stop)
        try:
            self._prepare()
            for attempt in range(3):
                self.port = free_port()
                try:
                    self._launch()
                    break
                except ServiceError:
                    self._kill()
                    # Another process may have taken the port between free_port() and bind(): retry.
                    if attempt == 2:
                        raise
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop the server (quickly, without saving anything) and remove its directory. Idempotent."""
        if self._dir is None:
            return
        try:
            self._kill()
        finally:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
            atexit.unregister(self.stop)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _prepare(self) -> None:
        """One-off set-up in ``self.dir`` before the first launch."""

    def _launch(self) -> None:
        raise NotImplementedError

    def _kill(self) -> None:
        raise NotImplementedError


class PostgresServer(_Service):
    """A throwaway PostgreSQL cluster with trust auth for user ``postgres``.

    When we are root the cluster runs as the ``postgres`` system user (PostgreSQL refuses to run as root).
    Durability is switched off (fsync, synchronous_commit, full_page_writes) because the data dies with the
    session anyway.
    """

    _prefix = "callgate-pg-"
    user = "postgres"
    host = "127.0.0.1"

    def __init__(self, *, bin_dir: Path | None = None, os_user: str = "postgres") -> None:
        super().__init__()
        self.bin_dir = bin_dir or find_postgres_bin_dir()
        self._os_user = os_user if os.geteuid() == 0 else None

    @property
    def url(self) -> str:
        """SQLAlchemy URL (asyncpg driver) of the ``postgres`` database."""
        return self.url_for("postgres")

    def url_for(self, database: str) -> str:
        """SQLAlchemy URL (asyncpg driver) of ``database`` on this server."""
        return f"postgresql+asyncpg://{self.user}@{self.host}:{self.port}/{database}"

    def dsn_for(self, database: str = "postgres") -> str:
        """libpq/asyncpg DSN of ``database``, for ``asyncpg.connect`` or ``psql``."""
        return f"postgresql://{self.user}@{self.host}:{self.port}/{database}"

    @property
    def dsn(self) -> str:
        return self.dsn_for("postgres")

    def execute(self, sql: str, *, database: str = "postgres") -> str:
        """Run SQL with ``psql`` (one implicit transaction per statement) and return its output."""
        psql = [str(self._psql()), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"]
        cmd = [*psql, "-d", self.dsn_for(database), "-c", sql]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise ServiceError(f"psql failed ({sql!r}): {done.stderr.strip()}")
        return done.stdout

    def create_database(self, name: str, template: str | None = None) -> str:
        """Create ``name`` (a copy of ``template`` if given) and return its SQLAlchemy URL.

        A template must have no open connections while it is copied.
        """
        sql = f"CREATE DATABASE {_quote_identifier(name)}"
        if template is not None:
            sql += f" TEMPLATE {_quote_identifier(template)}"
        self.execute(sql)
        return self.url_for(name)

    def drop_database(self, name: str) -> None:
        """Drop ``name`` if it exists, closing its open connections first."""
        self.execute(f"DROP DATABASE IF EXISTS {_quote_identifier(name)} WITH (FORCE)")

    # -- internals ---------------------------------------------------------------------------------

    def _psql(self) -> Path:
        psql = self.bin_dir / "psql"
        if psql.is_file():
            return psql
        found = shutil.which("psql")
        if found is None:
            raise ServiceError("psql not found; install postgresql-client")
        return Path(found)

    def _as_owner(self, *args: str | Path) -> list[str]:
        cmd = [str(arg) for arg in args]
        if self._os_user is None:
            return cmd
        return ["runuser", "-u", self._os_user, "--", *cmd]

    def _run(self, *args: str | Path, timeout: float = _START_TIMEOUT) -> None:
        done = subprocess.run(
            self._as_owner(*args),
            cwd=self.dir,  # the owner may not be able to read our cwd (e.g. /root)
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode != 0:
            raise ServiceError(
                f"{Path(args[0]).name} failed ({done.returncode}): {done.stderr.strip()}\n"
                f"log:\n{_tail(self.dir / 'postgres.log')}"
            )

    def _prepare(self) -> None:
        if self._os_user is not None:
            try:
                shutil.chown(self.dir, user=self._os_user)
            except LookupError as exc:
                raise ServiceError(
                    f"running as root needs the {self._os_user!r} system user; "
                    "the postgresql package creates it"
                ) from exc
        self._run(
            self.bin_dir / "initdb",
            "--pgdata", self.dir / "data",
            "--username", self.user,
            "--auth", "trust",
            "--encoding", "UTF8",
            "--locale", "C",
            "--no-sync",
        )  # fmt: skip
        settings = {
            "listen_addresses": f"'{self.host}'",
            "unix_socket_directories": f"'{self.dir}'",
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_connections": "200",
        }
        with (self.dir / "data" / "postgresql.conf").open("a") as conf:
            conf.write("\n# callgate tests\n")
            conf.writelines(f"{key} = {value}\n" for key, value in settings.items())

    def _launch(self) -> None:
        self._run(
            self.bin_dir / "pg_ctl", "start",
            "--pgdata", self.dir / "data",
            "--log", self.dir / "postgres.log",
            "--options", f"-p {self.port}",
            "--wait", "--timeout", str(int(_START_TIMEOUT)),
        )  # fmt: skip
        self._wait_ready()

    def _wait_ready(self) -> None:
        # pg_ctl --wait already waits; this also proves the TCP listener (not only the socket) is up.
        deadline = time.monotonic() + _START_TIMEOUT
        while True:
            try:
                self.execute("SELECT 1")
                return
            except ServiceError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def _kill(self) -> None:
        if self._dir is None or not (self._dir / "data" / "postmaster.pid").exists():
            return
        with contextlib.suppress(ServiceError, subprocess.TimeoutExpired):
            self._run(
                self.bin_dir / "pg_ctl", "stop",
                "--pgdata", self._dir / "data",
                "--mode", "immediate",
                "--wait",
                timeout=30,
            )  # fmt: skip


class RedisServer(_Service):
    """A throwaway ``redis-server`` that keeps nothing on disk."""

    _prefix = "callgate-redis-"
    host = "127.0.0.1"

    def __init__(self, *, executable: str | None = None) -> None:
        super().__init__()
        found = executable or shutil.which("redis-server")
        if found is None:
            raise ServiceError(
                "redis-server not found; install it with `apt-get install redis-server` "
                "(./scripts/test.sh does)"
            )
        self.executable = found
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """redis-py URL of database 0."""
        return self.url_for(0)

    def url_for(self, db: int) -> str:
        return f"redis://{self.host}:{self.port}/{db}"

    def _launch(self) -> None:
        log = self.dir / "redis.log"
        cmd = [
            self.executable,
            "--port", str(self.port),
            "--bind", self.host,
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.dir),
            "--daemonize", "no",
            "--logfile", str(log),
        ]  # fmt: skip
        self._process = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + _START_TIMEOUT
        while not self._ping():
            if self._process.poll() is not None or time.monotonic() > deadline:
                raise ServiceError(f"redis-server did not start on port {self.port}:\n{_tail(log)}")
            time.sleep(0.02)

    def _ping(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def _kill(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
