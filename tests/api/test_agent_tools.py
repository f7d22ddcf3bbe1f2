"""An agent's ``tools``: validated at create and update, in the OpenAPI schema, header values sealed at
rest and never returned (sending the placeholder back keeps them)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import text

from tests.support.world import World, WorldFactory

LOOKUP: dict[str, Any] = {
    "type": "http",
    "name": "lookup_order",
    "description": "Look up an order.",
    "parameters": {
        "type": "object",
        "properties": {"order_id": {"type": "string"}},
        "required": ["order_id"],
    },
    "url": "https://shop.example.com/orders",
    "headers": {"Authorization": "Bearer shop-secret", "X-Shop": "42"},
}
AGENT = {"name": "shop", "prompt": "Help with orders.", "tools": [LOOKUP, {"type": "wait"}]}


async def test_tools_are_stored_sealed_and_never_returned(world: World) -> None:
    team = await world.team("acme")
    r = await world.client.post("/v1/agents", json=AGENT, headers=team.auth())
    assert r.status_code == 201, r.text
    agent = r.json()
    assert agent["tools"][0]["headers"] == {"Authorization": "********", "X-Shop": "********"}
    assert agent["tools"][0]["method"] == "POST" and agent["tools"][0]["timeout_ms"] == 5000
    async with world.runtime.db.read() as s:
        raw = (
            await s.execute(text("SELECT tools FROM agent WHERE id = :id"), {"id": agent["id"]})
        ).scalar_one()
    assert "shop-secret" not in str(raw) and "sealed:v1:" in str(raw)

    # A read-modify-write keeps the stored secrets; a new value replaces one.
    tools = agent["tools"]
    tools[0]["headers"]["X-Shop"] = "43"
    r = await world.client.patch(f"/v1/agents/{agent['id']}", json={"tools": tools}, headers=team.auth())
    assert r.status_code == 200, r.text
    async with world.runtime.db.read() as s:
        from callgate.domain.agents import get_agent
        from callgate.store.sealing import open_

        row = await get_agent(s, team_id=team.id, agent_id=agent["id"])
        headers = {k: open_(v) for k, v in row.tools[0]["headers"].items()}
    assert headers == {"Authorization": "Bearer shop-secret", "X-Shop": "43"}


@pytest.mark.parametrize(
    ("tools", "why"),
    [
        ([{**LOOKUP, "parameters": {"type": "string"}}], "object"),
        (
            [{**LOOKUP, "parameters": {"type": "object", "properties": {"x": {"type": "nonsense"}}}}],
            "JSON Schema",
        ),
        ([LOOKUP, LOOKUP], "two tools"),
        ([{**LOOKUP, "name": "end_call"}], "built-in"),
        ([{**LOOKUP, "name": "has space"}], "pattern"),
        ([{**LOOKUP, "url": "ftp://example.com"}], "URL"),
        ([{**LOOKUP, "headers": {"Content-Length": "1"}}], "header"),
        ([{**LOOKUP, "headers": {"X-A": "a\r\nX-B: b"}}], "line breaks"),
        ([{**LOOKUP, "timeout_ms": 10}], "timeout_ms"),
        ([{"type": "transfer_call"}], "exactly one"),
        ([{"type": "teleport"}], "type"),
        ([{**LOOKUP, "headers": {"Authorization": "********"}}], "no stored value"),
    ],
)
async def test_bad_tools_are_refused(world: World, tools: list[dict[str, Any]], why: str) -> None:
    team = await world.team("acme")
    r = await world.client.post("/v1/agents", json={**AGENT, "tools": tools}, headers=team.auth())
    assert r.status_code == 422, r.text
    assert why.lower() in r.text.lower()


async def test_tools_are_in_the_openapi_schema(world: World) -> None:
    schema = (await world.client.get("/openapi.json")).json()
    create = schema["components"]["schemas"]["AgentCreate"]["properties"]["tools"]
    kinds = {ref["$ref"].rsplit("/", 1)[1] for ref in create["items"]["oneOf"]}
    assert {"HttpTool", "ClientTool", "TransferCallTool", "EndCallTool", "SendDtmfTool", "WaitTool"} <= kinds


async def test_a_flow_step_must_name_one_of_the_agents_http_tools(world: World) -> None:
    team = await world.team("acme")
    step = {"name": "lookup_order", "arguments": {"order_id": "{{order}}"}, "store": {"status": "status"}}
    flow = {
        "start": "look",
        "variables": {"order": "A1"},
        "states": {
            "look": {"tool": step, "next": "told", "on_error": "sorry"},
            "told": {"say": "It is {{status}}.", "end": True},
            "sorry": {"say": "Sorry.", "end": True},
        },
    }
    body = {"name": "shop", "flow": flow}
    for tools in (
        [],
        [{**LOOKUP, "name": "other"}],
        [{"type": "client", **{k: LOOKUP[k] for k in ("name", "description")}}],
    ):
        r = await world.client.post("/v1/agents", json={**body, "tools": tools}, headers=team.auth())
        assert r.status_code == 422, r.text
        fields = {e["field"]: e["message"] for e in r.json()["errors"]}
        assert list(fields) == ["flow.states.look.tool.name"], fields
        assert "'lookup_order' is not" in fields["flow.states.look.tool.name"]

    r = await world.client.post("/v1/agents", json={**body, "tools": [LOOKUP]}, headers=team.auth())
    assert r.status_code == 201, r.text
    # Taking the tool away from the agent would break the flow: refused too.
    r = await world.client.patch(f"/v1/agents/{r.json()['id']}", json={"tools": []}, headers=team.auth())
    assert r.status_code == 422, r.text
    assert [e["field"] for e in r.json()["errors"]] == ["flow.states.look.tool.name"]


async def test_header_secrets_are_resealed_when_the_secret_key_rolls_over(world_with: WorldFactory) -> None:
    from callgate.domain import tools
    from callgate.store import sealing

    old_key, new_key = "old-secret-key-" + "o" * 32, "new-secret-key-" + "n" * 32

    async def stored_headers(world: World, agent_id: str) -> dict[str, str]:
        async with world.runtime.db.read() as s:
            raw = (
                await s.execute(text("SELECT tools FROM agent WHERE id = :id"), {"id": agent_id})
            ).scalar_one()
        headers: dict[str, str] = (json.loads(raw) if isinstance(raw, str) else raw)[0]["headers"]
        return headers

    async with world_with(secret_key=old_key, webhooks_dispatch=False) as world:
        team = await world.team("acme")
        r = await world.client.post("/v1/agents", json=AGENT, headers=team.auth())
        assert r.status_code == 201, r.text
        agent_id = r.json()["id"]
        before = await stored_headers(world, agent_id)
        flow_agent = await world.client.post(  # an agent without header secrets is left alone
            "/v1/agents", json={**AGENT, "tools": [{"type": "wait"}]}, headers=team.auth()
        )
        assert flow_agent.status_code == 201
    async with world_with(
        secret_key=new_key, previous_secret_keys=[old_key], webhooks_dispatch=False
    ) as world:
        after = await stored_headers(world, agent_id)  # the start re-sealed them under the new key
        current = sealing.current_prefix()
        assert all(not v.startswith(current) for v in before.values())
        assert all(v.startswith(current) for v in after.values()) and after != before
        assert {k: sealing.open_(v) for k, v in after.items()} == LOOKUP["headers"]
        assert await world.runtime.db.write(tools.seal_stored_secrets) == 0  # nothing left to do
        r = await world.client.get(f"/v1/agents/{agent_id}", headers=team.auth())
        assert r.json()["tools"][0]["headers"] == {"Authorization": "********", "X-Shop": "********"}
