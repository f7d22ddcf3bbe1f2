"""callgate nodes as real processes for restart, kill -9 and multi-node tests: uvicorn running the app
factory, or the real ``callgate serve`` command (migrations, first-start seeding, proxy headers)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Self

import httpx

from tests.support.services import free_port

ROOT = Path(__file__).resolve().parents[2]


class Node:
    """``callgate.app:create_app`` in its own process, on ``database_url``, with ``settings``
    (``CALLGATE_*``); ``serve=True`` starts it with ``callgate serve`` instead of bare uvicorn."""

    def __init__(
        self,
        database_url: str,
        data_dir: Path,
        *,
        serve: bool = False,
        env: dict[str, str] | None = None,
        **settings: object,
    ) -> None:
        self.port = free_port()
        self.serve = serve
        self.env = {
            **os.environ,
            "CALLGATE_DATABASE_URL": database_url,
            "CALLGATE_DATA_DIR": str(data_dir),
            "CALLGATE_SECRET_KEY": "test-secret-key-" + "x" * 32,
            "CALLGATE_SPEECH_WARMUP": "false",
            "CALLGATE_LOG_JSON": "false",
            "CALLGATE_LOG_LEVEL": "WARNING",
            "PYTHONPATH": str(ROOT / "src"),
            "PYTHONUNBUFFERED": "1",  # what the CLI prints is in the log as soon as it is printed
            **{
                f"CALLGATE_{k.upper()}": str(v).lower() if isinstance(v, bool) else str(v)
                for k, v in settings.items()
            },
            **(env or {}),
        }
        self.log = data_dir / f"node-{self.port}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, *, timeout: float = 180.0) -> Self:
        self.launch()
        return self.wait_started(timeout=timeout)

    def launch(self) -> None:
        """Start the process without waiting for it (several nodes start at once, as under compose)."""
        self.log.parent.mkdir(parents=True, exist_ok=True)
        if self.serve:
            cmd = [
                sys.executable,
                "-m",
                "callgate.cli",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
            ]
        else:
            cmd = [
                sys.executable, "-m", "uvicorn", "callgate.app:create_app", "--factory",
                "--host", "127.0.0.1", "--port", str(self.port), "--log-level", "warning",
            ]  # fmt: skip
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)

    def wait_started(self, *, timeout: float = 180.0) -> Self:
        """Wait until the node answers ``/healthz``; raises with the log's tail if it exited or hangs."""
        assert self.process is not None, "launch() first"
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"node exited ({self.process.returncode}):\n{self.log_excerpt()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code < 500:
                    return self
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"node did not start:\n{self.log_excerpt()}")
            time.sleep(0.1)

    def log_excerpt(self, *, head: int = 4000, tail: int = 2000) -> str:
        """The log's start (where the first error is logged) and its end (how the node ended)."""
        text = self.log.read_text(errors="replace")
        if len(text) <= head + tail:
            return text
        return f"{text[:head]}\n[... {len(text) - head - tail} characters ...]\n{text[-tail:]}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def kill(self) -> None:
        """``kill -9``: no shutdown, nothing flushed."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()

    def __enter__(self) -> Self:
        return self.start()

    async def __aenter__(self) -> Self:
        """Start in a thread: an async test's event loop keeps running while the node starts. A blocked
        loop may be holding its runtime's SQLite write transaction, which the node's first write would
        then wait on until it gives up (a deadlock that failed a kill -9 test under load)."""
        return await asyncio.to_thread(self.start)

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await asyncio.to_thread(self.stop)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
