"""The ``callgate`` command: db upgrade, keys create, agents create/list — and what it creates works
against the app (the same database, read by a running app)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest
import yaml
from click.testing import CliRunner, Result

from callgate.app import create_app
from callgate.auth import keys as keylib
from callgate.cli import main
from callgate.runtime import Runtime
from tests.support.world import make_settings

FLOW_AGENT = {
    "name": "Front desk",
    "variables": {"company": "Acme"},
    "flow": {
        "start": "hello",
        "states": {
            "hello": {
                "say": "Welcome to {{company}}. Say bye to leave.",
                "intents": [{"name": "bye", "keywords": ["bye"], "goto": "bye"}],
            },
            "bye": {"say": "Goodbye.", "end": True},
        },
    },
}
PROMPT_AGENT = {
    "name": "Helper",
    "prompt": "You help callers of {{company}}.",
    "variables": {"company": "Acme"},
}


class Cli:
    def __init__(self, tmp_path: Path, database_url: str) -> None:
        self.tmp_path = tmp_path
        self.database_url = database_url
        self.env = {"CALLGATE_DATA_DIR": str(tmp_path / "data"), "CALLGATE_DATABASE_URL": database_url}
        self.runner = CliRunner()

    def __call__(self, *args: str, ok: bool = True) -> Result:
        result = self.runner.invoke(main, list(args), env=self.env, catch_exceptions=False)
        if ok:
            assert result.exit_code == 0, f"callgate {' '.join(args)}: {result.output}"
        else:
            assert result.exit_code != 0, f"callgate {' '.join(args)} should have failed: {result.output}"
        return result

    def file(self, name: str, content: str) -> str:
        path = self.tmp_path / name
        path.write_text(content)
        return str(path)

    def request(self, method: str, path: str, **kwargs: object) -> httpx.Response:
        """One request to an app on the CLI's database."""

        async def go() -> httpx.Response:
            runtime = Runtime(make_settings(self.tmp_path, self.database_url))
            app = create_app(runtime=runtime)
            async with app.router.lifespan_context(app):
                transport = httpx.ASGITransport(app=app)
                async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
                    return await client.request(method, path, **kwargs)  # type: ignore[arg-type]

        return asyncio.run(go())


@pytest.fixture
def cli(tmp_path: Path, database_url: str) -> Cli:
    return Cli(tmp_path, database_url)


@pytest.fixture
def fresh_cli(tmp_path: Path) -> Cli:
    """On a SQLite file that does not exist yet."""
    return Cli(tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'fresh' / 'callgate.db'}")


def last_line(result: Result) -> str:
    return result.output.strip().splitlines()[-1].strip()


def test_db_upgrade_creates_the_schema(fresh_cli: Cli) -> None:
    result = fresh_cli("db", "upgrade")
    assert "latest schema" in result.output
    assert (fresh_cli.tmp_path / "fresh" / "callgate.db").exists()
    fresh_cli("db", "upgrade")  # again: nothing to do
    r = fresh_cli("agents", "list")
    assert r.output.strip() == ""


def test_keys_and_agents_work_against_the_app(cli: Cli) -> None:
    flow_id = last_line(cli("agents", "create", "--file", cli.file("flow.yaml", yaml.safe_dump(FLOW_AGENT))))
    prompt_id = last_line(
        cli("agents", "create", "--file", cli.file("prompt.json", json.dumps(PROMPT_AGENT)))
    )
    assert flow_id.startswith("agt_") and prompt_id.startswith("agt_")

    publishable = last_line(cli("keys", "create", "--type", "publishable", "--origin", "https://a.example"))
    secret = last_line(cli("keys", "create", "--type", "secret", "--name", "backend"))
    shared = last_line(cli("keys", "create", "--type", "shared", "--agent", flow_id))
    for key, kind in ((publishable, "publishable"), (secret, "secret"), (shared, "shared")):
        parsed = keylib.parse(key)
        assert parsed is not None and parsed.type == kind, key
    assert publishable.startswith("cg_pk_") and secret.startswith("cg_sk_") and shared.startswith("cg_sh_")

    r = cli.request(
        "POST",
        "/v1/web-calls/token",
        json={"agent_id": flow_id},
        headers={"Authorization": f"Bearer {publishable}", "Origin": "https://a.example"},
    )
    assert r.status_code == 201, r.text
    r = cli.request(
        "POST",
        "/v1/web-calls/token",
        json={"agent_id": flow_id},
        headers={"Authorization": f"Bearer {publishable}", "Origin": "https://b.example"},
    )
    assert r.status_code == 403, r.text
    r = cli.request("POST", "/v1/web-calls/token", json={}, headers={"Authorization": f"Bearer {shared}"})
    assert r.status_code == 201 and r.json()["agent_id"] == flow_id, r.text

    r = cli.request("GET", "/v1/agents", headers={"Authorization": f"Bearer {secret}"})
    assert r.status_code == 200, r.text
    agents = {a["id"]: a for a in r.json()["data"]}
    assert set(agents) == {flow_id, prompt_id}
    assert agents[flow_id]["flow"]["start"] == "hello" and agents[flow_id]["prompt"] is None
    assert agents[prompt_id]["prompt"] == PROMPT_AGENT["prompt"]

    listing = cli("agents", "list").output.strip().splitlines()
    assert listing == [f"{flow_id}\tflow\tFront desk", f"{prompt_id}\tprompt\tHelper"]
    as_json = [json.loads(line) for line in cli("agents", "list", "--json").output.strip().splitlines()]
    assert as_json == [
        {"id": flow_id, "name": "Front desk", "kind": "flow"},
        {"id": prompt_id, "name": "Helper", "kind": "prompt"},
    ]


def test_teams_are_kept_apart(fresh_cli: Cli) -> None:
    agent = last_line(
        fresh_cli(
            "agents", "create", "--team", "blue", "--file", fresh_cli.file("a.json", json.dumps(PROMPT_AGENT))
        )
    )
    red_key = last_line(fresh_cli("keys", "create", "--type", "secret", "--team", "red"))
    assert fresh_cli("agents", "list", "--team", "red").output.strip() == ""
    assert agent in fresh_cli("agents", "list", "--team", "blue").output
    r = fresh_cli.request("GET", f"/v1/agents/{agent}", headers={"Authorization": f"Bearer {red_key}"})
    assert r.status_code == 404, r.text
    # A key cannot be bound to another team's agent.
    result = fresh_cli("keys", "create", "--type", "shared", "--team", "red", "--agent", agent, ok=False)
    assert "not_found" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--type", "secret", "--origin", "https://a.example"], "secret key takes no origins"),
        (["--type", "publishable"], "allowed origin"),
        (["--type", "shared"], "exactly one agent"),
        (["--type", "secret", "--rate-limit", "lots"], "lots"),
        (["--type", "secret", "--token-ttl", "1"], "token_ttl_s"),
        (["--type", "root"], "root"),
    ],
)
def test_invalid_keys_are_refused_clearly(fresh_cli: Cli, args: list[str], message: str) -> None:
    result = fresh_cli("keys", "create", *args, ok=False)
    assert message in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("broken.yaml", "name: [unclosed\nprompt: x\n", "not valid YAML"),
        (
            "both.json",
            json.dumps({**PROMPT_AGENT, "flow": FLOW_AGENT["flow"]}),
            "exactly one of `prompt` or `flow`",
        ),
        ("neither.yaml", "name: nobody\n", "exactly one of `prompt` or `flow`"),
        ("typo.json", json.dumps({**PROMPT_AGENT, "promt": "x"}), "promt"),
        ("wrong.json", json.dumps({**PROMPT_AGENT, "max_duration_s": "long"}), "max_duration_s"),
        ("list.yaml", "- name: a\n- name: b\n", "invalid agent"),
        ("empty.yaml", "", "invalid agent"),
        (
            "badflow.yaml",
            yaml.safe_dump({**FLOW_AGENT, "flow": {**FLOW_AGENT["flow"], "start": "nowhere"}}),
            "nowhere",
        ),
    ],
)
def test_invalid_agent_files_are_refused_clearly(
    fresh_cli: Cli, name: str, content: str, message: str
) -> None:
    result = fresh_cli("agents", "create", "--file", fresh_cli.file(name, content), ok=False)
    assert message in result.output, result.output
    assert "Traceback" not in result.output
    assert fresh_cli("agents", "list").output.strip() == ""


def test_missing_agent_file(fresh_cli: Cli) -> None:
    result = fresh_cli("agents", "create", "--file", str(fresh_cli.tmp_path / "nope.yaml"), ok=False)
    assert "does not exist" in result.output


def test_cli_keys_are_not_stored_in_plaintext(fresh_cli: Cli) -> None:
    keys = [
        last_line(fresh_cli("keys", "create", "--type", "secret")),
        last_line(fresh_cli("keys", "create", "--type", "publishable", "--origin", "https://a.example")),
    ]
    db = fresh_cli.tmp_path / "fresh" / "callgate.db"
    blobs = [p.read_bytes() for p in (db, db.with_name("callgate.db-wal")) if p.exists()]
    for key in keys:
        parsed = keylib.parse(key)
        assert parsed is not None
        assert any(parsed.lookup_id.encode() in blob for blob in blobs)  # we look in the right place
        for blob in blobs:
            assert key.encode() not in blob and parsed.secret.encode() not in blob


def test_keys_list_and_revoke(tmp_path: Path) -> None:
    """`keys list` shows ids and state, never the key; a key is revoked once."""
    env = {
        "CALLGATE_DATA_DIR": str(tmp_path / "data"),
        "CALLGATE_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/cg.db",
    }
    runner = CliRunner()
    created = runner.invoke(main, ["keys", "create", "--type", "secret", "--name", "ci"], env=env)
    assert created.exit_code == 0, created.output
    key = created.output.strip().splitlines()[-1]
    key_id = created.output.split()[3]
    listed = runner.invoke(main, ["keys", "list"], env=env)
    assert key_id in listed.output and "active" in listed.output and key not in listed.output
    revoked = runner.invoke(main, ["keys", "revoke", key_id], env=env)
    assert revoked.exit_code == 0, revoked.output
    assert "revoked" in runner.invoke(main, ["keys", "list"], env=env).output
    again = runner.invoke(main, ["keys", "revoke", key_id], env=env)
    assert again.exit_code != 0 and "not_found" in again.output


def test_carriers_create_list_delete(cli: Cli) -> None:
    """A carrier made on the command line is sealed under the server's key: the app reads it (without
    its secrets), and a phone number can use it."""
    cli.env["CALLGATE_SECRET_KEY"] = "test-secret-key-" + "x" * 32  # make_settings' key
    key = cli("keys", "create", "--type", "secret").output.strip().splitlines()[-1]
    carrier = {
        "kind": "sip",
        "name": "PBX",
        "outbound": {"host": "pbx.example", "transport": "tcp", "username": "cg", "password": "s3cret-pw"},
        "inbound": {"allowed_addresses": ["10.1.2.0/24"]},
    }
    carrier_id = cli(
        "carriers", "create", "--file", cli.file("c.yaml", yaml.safe_dump(carrier))
    ).output.strip()
    assert carrier_id.startswith("car_")
    listed = cli("carriers", "list").output
    assert f"{carrier_id}\tsip\tPBX\ttcp:pbx.example:5060" in listed
    as_json = [json.loads(line) for line in cli("carriers", "list", "--json").output.splitlines()]
    assert as_json[0]["outbound"]["password_set"] is True and "s3cret-pw" not in listed + str(as_json)

    r = cli.request("GET", f"/v1/carriers/{carrier_id}", headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 200 and r.json()["inbound"]["allowed_addresses"] == ["10.1.2.0/24"]

    bad = cli("carriers", "create", "--file", cli.file("bad.yaml", "kind: sip\nname: x\nport: 1\n"), ok=False)
    assert "invalid carrier" in bad.output
    assert "not_found" in cli("carriers", "delete", "car_nope", ok=False).output
    assert cli("carriers", "delete", carrier_id).output.strip() == f"deleted {carrier_id}"
    assert cli("carriers", "list").output == ""
