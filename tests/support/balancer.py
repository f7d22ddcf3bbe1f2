"""A real nginx in front of callgate nodes, running the repository's own ``deploy/nginx/callgate.conf``.

nginx runs in the foreground (``daemon off``) from Debian's binary, with its prefix, pid file, logs and
temporary directories in a temp dir, on a free port. The test writes only what the deploy guide leaves to
the operator: ``callgate/nodes.conf`` (one ``server`` line per node) and ``callgate/site.conf``
(``listen``); the proxy settings are the canonical file, included as it is.

    with Balancer([node.port for node in nodes]) as lb:
        httpx.get(f"{lb.url}/healthz")
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

from tests.support.services import ServiceError, free_port

ROOT = Path(__file__).resolve().parents[2]
CANONICAL = ROOT / "deploy" / "nginx" / "callgate.conf"

_MAIN = """\
daemon off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log {dir}/access.log;
    client_body_temp_path {dir}/tmp/body;
    proxy_temp_path {dir}/tmp/proxy;
    fastcgi_temp_path {dir}/tmp/fastcgi;
    uwsgi_temp_path {dir}/tmp/uwsgi;
    scgi_temp_path {dir}/tmp/scgi;
    include {canonical};
}}
"""


class Balancer:
    """nginx balancing over ``127.0.0.1:<port>`` for each of ``node_ports``, listening on :attr:`port`."""

    def __init__(
        self, node_ports: Sequence[int], *, directory: Path | None = None, executable: str | None = None
    ) -> None:
        """``directory``: where nginx keeps its config and logs (kept after stop); a temp dir by default
        (removed on stop)."""
        found = executable or shutil.which("nginx") or "/usr/sbin/nginx"
        if not Path(found).is_file():
            raise ServiceError(
                "nginx not found; install it with `apt-get install nginx` (./scripts/test.sh does)"
            )
        self.executable = found
        self.node_ports = list(node_ports)
        self.port = 0
        self._owns_dir = directory is None
        self.dir = directory or Path(tempfile.mkdtemp(prefix="callgate-nginx-"))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def start(self) -> Self:
        (self.dir / "tmp").mkdir(parents=True, exist_ok=True)
        (self.dir / "callgate").mkdir(exist_ok=True)
        # What docs/deploy.md has the operator write; max_fails=1 (nginx's default) takes a dead node
        # out of the rotation after one refused connection.
        nodes = "".join(
            f"server 127.0.0.1:{port} max_fails=1 fail_timeout=10s;\n" for port in self.node_ports
        )
        (self.dir / "callgate" / "nodes.conf").write_text(nodes)
        (self.dir / "nginx.conf").write_text(_MAIN.format(dir=self.dir, canonical=CANONICAL))
        for attempt in range(3):
            self.port = free_port()
            (self.dir / "callgate" / "site.conf").write_text(f"listen 127.0.0.1:{self.port};\n")
            cmd = [self.executable, "-p", str(self.dir), "-c", str(self.dir / "nginx.conf"), "-e", "stderr"]
            log = (self.dir / "stderr.log").open("ab")
            self.process = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
            log.close()
            if self._wait_listening():
                return self
            self._stop_process()
            if attempt == 2:
                raise ServiceError(f"nginx did not start:\n{self.log_tail()}")
        return self

    def _wait_listening(self, timeout: float = 30.0) -> bool:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False  # e.g. the port was taken meanwhile: try another
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return True
            except OSError:
                time.sleep(0.05)
        return False

    def log_tail(self, lines: int = 30) -> str:
        text = ""
        for name in ("stderr.log", "error.log"):
            path = self.dir / name
            if path.exists():
                text += path.read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def access_log(self) -> list[str]:
        path = self.dir / "access.log"
        return path.read_text(errors="replace").splitlines() if path.exists() else []

    def _stop_process(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()  # nginx's fast shutdown
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def stop(self) -> None:
        self._stop_process()
        if self._owns_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
