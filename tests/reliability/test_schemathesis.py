"""Schemathesis over the whole OpenAPI document (native API and every dialect) against a real server.

The app runs as a real process (uvicorn on a free port, on a real database with one team and a valid secret
key, so most requests get past authentication); schemathesis generates valid and invalid requests for
every operation from a fixed seed. The run must find no 5xx answer and no answer that breaks the document
(status, media type, headers or body not as declared, error responses included).

Volumes: ``CALLGATE_FUZZ_EXAMPLES`` (examples per operation in the fuzzing phase, default 10: about 4,000
requests, on SQLite), ``CALLGATE_FUZZ_EXAMPLES_POSTGRESQL`` (default 3: the same operations and seed on
PostgreSQL, a shorter run that keeps the suite in its time budget), ``CALLGATE_FUZZ_SEED``,
``CALLGATE_FUZZ_MIN_REQUESTS`` (default 2,000 at 10 examples, in proportion below) and
``CALLGATE_FUZZ_TIMEOUT_S`` (the fuzzer process's time limit, default 1800). The server counts what it
answered (``/metrics``), so the volume and the 5xx count are measured on the server, not assumed.
See RELIABILITY.md.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import httpx

from callgate.auth.keys import KeyType
from callgate.clock import utcnow
from callgate.config import Settings
from callgate.domain.agents import create_agent
from callgate.domain.keys import create_key, get_or_create_team
from callgate.store.db import Database
from tests.support.node import Node
from tests.support.world import PROMPT_AGENT

EXAMPLES = {
    "sqlite": int(os.environ.get("CALLGATE_FUZZ_EXAMPLES", "10")),
    "postgresql": int(os.environ.get("CALLGATE_FUZZ_EXAMPLES_POSTGRESQL", "3")),
}
SEED = int(os.environ.get("CALLGATE_FUZZ_SEED", "20261206"))
MIN_REQUESTS = int(os.environ.get("CALLGATE_FUZZ_MIN_REQUESTS", "2000"))
TIMEOUT_S = int(os.environ.get("CALLGATE_FUZZ_TIMEOUT_S", "1800"))
CHECKS = ",".join(
    (
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
        "allow_header_conformance",
    )
)
_REQUESTS = re.compile(r'^callgate_http_requests_total\{method="\w+",route="[^"]*",status="(\d+)"\} (\S+)$')


async def _seed(database_url: str, data_dir: Path) -> str:
    """One team with a prompt agent and a secret key that no generated request can rate-limit."""
    settings = Settings(data_dir=data_dir, database_url=database_url, secret_key="s" * 48)
    db = Database(settings.database_url)
    await db.start()
    now = utcnow()

    async def job(s):  # type: ignore[no-untyped-def]
        team = await get_or_create_team(s, name="fuzz", now=now, max_live_calls=100_000)
        _, secret = await create_key(
            s, team_id=team.id, key_type=KeyType.SECRET, now=now, rate_limit="1000000/minute"
        )
        await create_agent(
            s,
            team_id=team.id,
            fields={
                **PROMPT_AGENT,
                "flow": None,
                "initial_message": None,
                "voice": None,
                "stt": {},
                "llm": {},
                "tts": {},
                "max_duration_s": 600,
                "silence_timeout_s": 30,
                "webhook_url": None,
            },
            now=now,
        )
        return secret

    try:
        secret: str = await db.write(job)
    finally:
        await db.close()
    return secret


def _objects(base: str, secret: str) -> dict[str, str]:
    """Real ids for path parameters, so that half the generated requests reach past the 404 (the
    other half keep generated ids)."""
    auth = {"Authorization": f"Bearer {secret}"}
    with httpx.Client(base_url=base, headers=auth, timeout=30) as client:

        def made(path: str, body: dict[str, object]) -> str:
            r = client.post(path, json=body)
            assert r.status_code == 201, r.text
            return str(r.json()["id"])

        agent_id = client.get("/v1/agents").json()["data"][0]["id"]
        return {
            "agent_id": agent_id,
            "contact_id": made("/v1/contacts", {"name": "Ann"}),
            "number_id": made("/v1/phone-numbers", {"number": "+14155550100", "agent_id": agent_id}),
            "call_id": made("/v1/web-calls", {"agent_id": agent_id}),
            "endpoint_id": made("/v1/webhook-endpoints", {"url": "https://93.184.215.14/hook"}),
        }


def _config(path: Path, ids: dict[str, str]) -> Path:
    lines = []
    for name, value in ids.items():
        lines += [f"[dictionaries.{name}]", f'values = ["{value}"]', ""]
    lines.append("[parameters]")
    lines += [f'"path.{name}" = {{ dictionary = "{name}", probability = 0.5 }}' for name in ids]
    path.write_text("\n".join(lines) + "\n")
    return path


def _answered(metrics: str) -> dict[int, int]:
    """Requests the server answered, by status (``/metrics``), the fuzzer's own probes included."""
    counts: dict[int, int] = {}
    for line in metrics.splitlines():
        if (m := _REQUESTS.match(line)) is not None:
            counts[int(m[1])] = counts.get(int(m[1]), 0) + int(float(m[2]))
    return counts


def test_no_server_error_and_no_schema_violation(database_url: str, tmp_path: Path) -> None:
    cli = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    assert cli is not None, "schemathesis is a dev dependency: pip install -e '.[dev]'"
    examples = EXAMPLES["postgresql" if database_url.startswith("postgresql") else "sqlite"]
    # The default volume (10 examples) makes about twice the minimum; a shorter run is held to its share.
    min_requests = MIN_REQUESTS * min(examples, 10) // 10
    data_dir = tmp_path / "data"
    secret = asyncio.run(_seed(database_url, data_dir))
    report = tmp_path / "junit.xml"
    with Node(database_url, data_dir, secret_key="s" * 48, max_body_bytes=65536) as node:
        base = f"http://127.0.0.1:{node.port}"
        config = _config(tmp_path / "schemathesis.toml", _objects(base, secret))
        cmd = [
            cli, "--config-file", str(config), "run", f"{base}/openapi.json",
            "--checks", CHECKS,
            "--seed", str(SEED),
            "--max-examples", str(examples),
            "--workers", "1",
            "--phases", "examples,coverage,fuzzing",
            "--suppress-health-check", "all",
            "--request-timeout", "30",
            "--header", f"Authorization: Bearer {secret}",
            "--header", f"x-api-access-key: {secret}",
            "--report", "junit", "--report-junit-path", str(report),
            "--no-color",
        ]  # fmt: skip
        # Run from tmp_path: schemathesis keeps a cache directory (.schemathesis/) where it runs.
        run = subprocess.run(
            cmd, capture_output=True, text=True, cwd=tmp_path, timeout=TIMEOUT_S, check=False
        )
        answered = _answered(httpx.get(f"{base}/metrics", timeout=10).text)
        server_log = node.log.read_text(errors="replace")
    output = run.stdout[-20_000:] + run.stderr[-5_000:]
    total = sum(answered.values())
    server_errors = {status: n for status, n in answered.items() if status >= 500}
    print(f"answered {total} requests: {dict(sorted(answered.items()))}")
    assert not server_errors, f"5xx answers {server_errors}\n{output}\n{server_log[-5000:]}"
    assert run.returncode == 0, output
    assert total >= min_requests, f"only {total} requests were made\n{output}"
