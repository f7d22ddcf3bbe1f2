"""``callgate serve --workers 2`` is one node: its workers share the node's session limit and ``/metrics``
reports the node's totals whichever worker answers. A real ``callgate serve`` process tree."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from callgate.flows.demo import demo_flow
from tests.support.services import free_port

ROOT = Path(__file__).resolve().parents[1]
MAX_SESSIONS = 2
CALLS = 4


class Served:
    def __init__(self, base: str, key: str, log: Path) -> None:
        self.base, self.key, self.log = base, key, log


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    port = free_port()
    env = {
        **os.environ,
        "CALLGATE_DATA_DIR": str(tmp_path / "data"),
        "CALLGATE_SECRET_KEY": "test-secret-key-" + "x" * 32,
        "CALLGATE_SPEECH_WARMUP": "false",
        "CALLGATE_LOG_LEVEL": "INFO",
        "CALLGATE_MAX_SESSIONS": str(MAX_SESSIONS),
        "CALLGATE_MAX_LOOP_LAG_MS": "0",
        "PYTHONPATH": str(ROOT / "src"),
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    log = tmp_path / "serve.log"
    cmd = [sys.executable, "-m", "callgate.cli", "serve", "--port", str(port), "--workers", "2"]
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, log.read_text()[-3000:]
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.2)
        key = re.search(r"cg_sk_\w+", log.read_text())
        assert key, log.read_text()
        yield Served(base, key.group(0), log)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def _metric(text: str, name: str, labels: str = "") -> float:
    pattern = rf"^{re.escape(name)}{re.escape(labels)} ([0-9.e+-]+)$"
    return sum(float(m) for m in re.findall(pattern, text, re.MULTILINE))


async def _join(url: str) -> Any:
    """A text-mode caller: the open socket if the node let it in, else its close code."""
    ws = await websockets.connect(url)
    try:
        await ws.send('{"label":"rtvi-ai","type":"client-ready","id":"1","data":{"version":"1.0.0"}}')
        async with asyncio.timeout(30):
            while '"bot-ready"' not in str(await ws.recv()):
                pass
    except websockets.ConnectionClosed:
        await ws.close()
        return ws.close_code
    return ws


async def test_two_workers_are_one_node(served: Served) -> None:
    auth = {"Authorization": f"Bearer {served.key}"}
    async with httpx.AsyncClient(base_url=served.base, headers=auth, timeout=30) as http:
        body = {"name": "clinic", "flow": demo_flow().model_dump(mode="json", exclude_none=True)}
        agent = (await http.post("/v1/agents", json=body)).json()["id"]
        urls = []
        for _ in range(CALLS):
            r = await http.post("/v1/web-calls", json={"agent_id": agent, "mode": "text"})
            assert r.status_code == 201, r.text
            urls.append(r.json()["websocket_url"])
        joined = [await _join(url) for url in urls]
        admitted = [ws for ws in joined if not isinstance(ws, int)]
        refused = [code for code in joined if isinstance(code, int)]
        try:
            # Each worker takes its share of the node's limit: never more than the node's limit.
            assert 1 <= len(admitted) <= MAX_SESSIONS, joined
            assert set(refused) <= {1013}, refused
            # Whichever worker answers, /metrics counts the whole node.
            for _ in range(6):
                text = (await http.get("/metrics")).text
                assert _metric(text, "callgate_calls_created_total", '{transport="websocket"}') == CALLS
                assert _metric(text, "callgate_live_sessions") == len(admitted)
                assert _metric(text, "callgate_sessions_refused_total", '{reason="max_sessions"}') == len(
                    refused
                )
            # The workers log, in callgate's format, like a single process (they are fresh interpreters).
            refusals = '"logger": "callgate.realtime.start", "msg": "new call refused'
            assert served.log.read_text().count(refusals) == len(refused)
        finally:
            for ws in admitted:
                await ws.close()
