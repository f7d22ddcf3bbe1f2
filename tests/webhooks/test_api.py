"""The webhook API: endpoints CRUD, secrets shown once, bad input as problem+json, tenant isolation."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.helpers import assert_problem, field_names
from tests.support.world import World, WorldFactory
from tests.webhooks.conftest import add_endpoint, new_call

URL = "http://127.0.0.1:9/hooks"
EARLY, LATE = "2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z"


async def test_endpoint_crud_and_the_secret_shown_once(world: World) -> None:
    team = await world.team("acme")
    created = await add_endpoint(world, team, URL, events=["call.ended", "call.ended"], description="CRM")
    assert created["id"].startswith("whep_") and created["secret"].startswith("whsec_")
    assert created["events"] == ["call.ended"] and created["agent_ids"] == [] and created["enabled"] is True

    got = (await world.client.get(f"/v1/webhook-endpoints/{created['id']}", headers=team.auth())).json()
    assert "secret" not in got and got["description"] == "CRM"
    listed = (await world.client.get("/v1/webhook-endpoints", headers=team.auth())).json()
    assert [e["id"] for e in listed["data"]] == [created["id"]] and "secret" not in listed["data"][0]

    r = await world.client.patch(
        f"/v1/webhook-endpoints/{created['id']}",
        json={"events": [], "enabled": False, "agent_ids": [team.agent_id]},
        headers=team.auth(),
    )
    assert r.status_code == 200, r.text
    assert r.json()["events"] == [] and r.json()["enabled"] is False and "secret" not in r.json()

    r = await world.client.delete(f"/v1/webhook-endpoints/{created['id']}", headers=team.auth())
    assert r.status_code == 204
    assert_problem(
        await world.client.get(f"/v1/webhook-endpoints/{created['id']}", headers=team.auth()),
        404,
        "not_found",
    )
    assert (await world.client.get("/v1/webhook-endpoints", headers=team.auth())).json()["data"] == []


async def test_event_catalogue(world: World) -> None:
    team = await world.team("acme")
    r = await world.client.get("/v1/webhook-event-types", headers=team.auth())
    types = {t["type"]: t for t in r.json()}
    assert set(types) == {
        "call.created", "call.started", "call.ended", "call.failed", "call.analyzed",
        "call.recording.available", "call.provider_switched", "transcript.final", "transcript.partial",
        "call.tool_called",
    }  # fmt: skip
    assert types["transcript.partial"]["opt_in"] is True and types["call.ended"]["opt_in"] is False


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": "not a url"}, "body.url"),
        ({"url": "ftp://example.com/x"}, "body.url"),
        ({"url": URL, "events": ["call.exploded"]}, "body.events.0"),
        ({"url": URL, "events": "call.ended"}, "body.events"),
        ({"url": URL, "agent_ids": [""]}, "body.agent_ids.0"),
        ({"url": URL, "secret": "whsec_mine"}, "body.secret"),
        ({"url": URL, "enabled": "maybe"}, "body.enabled"),
        ({"url": "http://x/" + "a" * 2100}, "body.url"),
        ({}, "body.url"),
    ],
)
async def test_bad_endpoint_bodies_are_422(world: World, body: dict[str, Any], field: str) -> None:
    team = await world.team("acme")
    r = await world.client.post("/v1/webhook-endpoints", json=body, headers=team.auth())
    assert field in field_names(assert_problem(r, 422))


async def test_bad_input_elsewhere_is_a_problem_never_a_500(world: World) -> None:
    team = await world.team("acme")
    endpoint = await add_endpoint(world, team, URL)
    base = f"/v1/webhook-endpoints/{endpoint['id']}"
    cases = [
        ("PATCH", base, {"url": None}, 422),
        ("PATCH", base, {"events": None}, 422),
        ("PATCH", base, {"nope": 1}, 422),
        ("POST", base + "/rotate-secret", {"overlap_s": -1}, 422),
        ("POST", base + "/rotate-secret", {"overlap_s": 10**9}, 422),
        ("POST", "/v1/webhook-replays", {}, 422),
        ("POST", "/v1/webhook-replays", {"created_after": "2026-01-01T00:00:00"}, 422),
        ("POST", "/v1/webhook-replays", {"created_after": LATE, "created_before": EARLY}, 422),
        ("POST", "/v1/webhook-replays", {"call_id": "call_nope"}, 404),
        ("POST", "/v1/webhook-replays", {"created_after": EARLY, "created_before": LATE, "limit": 1001}, 422),
        ("POST", "/v1/webhook-replays", {"created_after": EARLY, "created_before": LATE, "limit": 0}, 422),
        ("POST", "/v1/webhook-replays", {"created_after": EARLY, "created_before": LATE, "cursor": "x"}, 422),
        ("GET", "/v1/webhook-deliveries?status=bogus", None, 422),
        ("GET", "/v1/webhook-deliveries?created_after=2026-01-01T00:00:00", None, 422),
        ("GET", "/v1/webhook-deliveries?cursor=%%%", None, 400),
        ("GET", "/v1/webhook-deliveries?limit=0", None, 422),
        ("POST", "/v1/webhook-deliveries/whd_nope/retry", None, 404),
        ("PUT", f"/v1/agents/{team.agent_id}/analysis-plan", {"data_schema": {"type": "string"}}, 422),
        ("PUT", f"/v1/agents/{team.agent_id}/analysis-plan", {"data_schema": {"$ref": "#"}}, 422),
        ("GET", f"/v1/agents/{team.agent_id}/analysis-plan", None, 404),
        ("POST", "/v1/web-calls", {"agent_id": team.agent_id, "webhook_url": "nope"}, 422),
    ]  # fmt: skip
    for method, path, body, status in cases:
        r = await world.client.request(method, path, json=body, headers=team.auth())
        assert_problem(r, status)
    r = await world.client.post(
        base + "/rotate-secret", content=b"{", headers={**team.auth(), "content-type": "application/json"}
    )
    assert_problem(r, 400, "malformed_json")


async def test_a_wide_replay_is_queued_page_by_page_with_a_cursor(world: World) -> None:
    team = await world.team("acme")
    endpoint = await add_endpoint(world, team, URL, events=["call.created"])
    call_ids = [await new_call(world, team) for _ in range(5)]
    body = {
        "created_after": "2000-01-01T00:00:00Z",
        "created_before": "2999-01-01T00:00:00Z",
        "event_types": ["call.created"],
        "endpoint_id": endpoint["id"],
        "limit": 2,
    }
    pages: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = {**body, "cursor": cursor} if cursor else body
        r = await world.client.post("/v1/webhook-replays", json=page, headers=team.auth())
        assert r.status_code == 202, r.text
        pages.append(r.json())
        if (cursor := r.json()["next_cursor"]) is None:
            break
    assert [(p["events"], p["deliveries"]) for p in pages] == [(2, 2), (2, 2), (1, 1)]
    # Every call's event went out once more: its original delivery and one replay, none twice.
    r = await world.client.get(
        "/v1/webhook-deliveries", params={"endpoint_id": endpoint["id"], "limit": 50}, headers=team.auth()
    )
    per_call = sorted(d["call_id"] for d in r.json()["data"])
    assert per_call == sorted(call_ids * 2)
    # The maximum per request is in the OpenAPI document.
    spec = (await world.client.get("/openapi.json")).json()
    limit = spec["components"]["schemas"]["ReplayCreate"]["properties"]["limit"]
    assert limit["maximum"] == 1000 and limit["default"] == 1000


async def test_another_team_s_objects_do_not_exist(world: World) -> None:
    acme, rival = await world.team("acme"), await world.team("rival")
    endpoint = await add_endpoint(world, acme, URL, events=["call.created"])
    call_id = await new_call(world, acme)
    delivery_id = await _first_delivery(world, acme)
    paths = [
        ("GET", f"/v1/webhook-endpoints/{endpoint['id']}", None),
        ("PATCH", f"/v1/webhook-endpoints/{endpoint['id']}", {"enabled": False}),
        ("DELETE", f"/v1/webhook-endpoints/{endpoint['id']}", None),
        ("POST", f"/v1/webhook-endpoints/{endpoint['id']}/rotate-secret", {}),
        ("GET", f"/v1/webhook-deliveries/{delivery_id}", None),
        ("POST", f"/v1/webhook-deliveries/{delivery_id}/retry", None),
        ("POST", "/v1/webhook-replays", {"call_id": call_id}),
        ("POST", "/v1/webhook-replays", {"call_id": call_id, "endpoint_id": endpoint["id"]}),
        ("PUT", f"/v1/agents/{acme.agent_id}/analysis-plan", {"data_schema": {"type": "object"}}),
    ]
    for method, path, body in paths:
        assert_problem(await world.client.request(method, path, json=body, headers=rival.auth()), 404)
    assert (await world.client.get("/v1/webhook-endpoints", headers=rival.auth())).json()["data"] == []
    assert (await world.client.get("/v1/webhook-deliveries", headers=rival.auth())).json()["data"] == []
    r = await world.client.get("/v1/webhook-deliveries", params={"call_id": call_id}, headers=rival.auth())
    assert r.json()["data"] == []
    # A rival's endpoint never receives acme's events.
    await add_endpoint(world, rival, URL + "/rival")
    await new_call(world, acme)
    r = await world.client.get("/v1/webhook-deliveries", headers=rival.auth())
    assert r.json()["data"] == []


async def test_publishable_keys_cannot_touch_webhooks(world: World) -> None:
    from callgate.auth.keys import KeyType

    team = await world.team("acme")
    key = await team.key(KeyType.PUBLISHABLE, allowed_origins=["https://shop.example"])
    r = await world.client.get("/v1/webhook-endpoints", headers=team.auth(key))
    assert_problem(r, 403)


async def _first_delivery(world: World, team: Any) -> str:
    r = await world.client.get("/v1/webhook-deliveries", headers=team.auth())
    delivery_id: str = r.json()["data"][0]["id"]
    return delivery_id


async def test_private_destinations_are_refused_without_the_setting(world_with: WorldFactory) -> None:
    async with world_with(webhooks_allow_private=False) as world:
        team = await world.team("acme")
        for url in ("http://127.0.0.1:8080/x", "http://localhost/x", "http://10.0.0.8/x", "http://[fd00::1]/x",
                    "http://169.254.169.254/latest/meta-data"):  # fmt: skip
            r = await world.client.post("/v1/webhook-endpoints", json={"url": url}, headers=team.auth())
            assert field_names(assert_problem(r, 422, "outbound_refused")) == {"body.url"}
        r = await world.client.post(
            "/v1/web-calls", json={"agent_id": team.agent_id, "webhook_url": URL}, headers=team.auth()
        )
        assert field_names(assert_problem(r, 422, "outbound_refused")) == {"body.webhook_url"}


async def test_deliveries_list_filters_and_pages(world: World) -> None:
    team = await world.team("acme")
    endpoint = await add_endpoint(world, team, URL, events=["call.created", "call.ended"])
    first = await new_call(world, team)
    await new_call(world, team)
    await world.client.post(f"/v1/calls/{first}/end", headers=team.auth())
    get = world.client.get
    assert len((await get("/v1/webhook-deliveries", headers=team.auth())).json()["data"]) == 3
    by_type = (await get("/v1/webhook-deliveries?event_type=call.ended", headers=team.auth())).json()["data"]
    assert [d["call_id"] for d in by_type] == [first]
    by_call = (await get(f"/v1/webhook-deliveries?call_id={first}", headers=team.auth())).json()["data"]
    assert sorted(d["event_type"] for d in by_call) == ["call.created", "call.ended"]
    by_endpoint = await get(f"/v1/webhook-deliveries?endpoint_id={endpoint['id']}", headers=team.auth())
    assert len(by_endpoint.json()["data"]) == 3
    page = (await get("/v1/webhook-deliveries?limit=2", headers=team.auth())).json()
    rest = (
        await get(f"/v1/webhook-deliveries?limit=2&cursor={page['next_cursor']}", headers=team.auth())
    ).json()
    assert len(page["data"]) == 2 and len(rest["data"]) == 1 and rest["next_cursor"] is None
    ids = {d["id"] for d in page["data"] + rest["data"]}
    assert len(ids) == 3
    future = (
        await get("/v1/webhook-deliveries?created_after=2999-01-01T00:00:00Z", headers=team.auth())
    ).json()
    assert future["data"] == []
