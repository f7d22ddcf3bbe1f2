"""Tenant isolation: another team's objects answer 404 (as if they did not exist), never 403.

Each case is run twice: by the intruder (team A's secret key on team B's ids → 404, B's object
unchanged) and by the owner (the same request → 2xx), which proves the route and ids are right.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import pytest

from callgate.auth.keys import KeyType
from tests.api.helpers import assert_problem
from tests.support.world import Team, World

_numbers = itertools.count(4155550100)


def fresh_number() -> str:
    return f"+1{next(_numbers)}"


@dataclass
class Objects:
    team: Team
    agent: str
    contact: str
    number: str
    call: str


async def populate(world: World, team: Team) -> Objects:
    auth = team.auth()
    r = await world.client.post("/v1/contacts", json={"name": f"{team.name} contact"}, headers=auth)
    assert r.status_code == 201, r.text
    contact = r.json()["id"]
    r = await world.client.post(
        "/v1/phone-numbers", json={"number": fresh_number(), "agent_id": team.agent_id}, headers=auth
    )
    assert r.status_code == 201, r.text
    number = r.json()["id"]
    r = await world.client.post("/v1/web-calls", json={"agent_id": team.agent_id}, headers=auth)
    assert r.status_code == 201, r.text
    return Objects(team, team.agent_id, contact, number, r.json()["id"])


@pytest.fixture
async def teams(world: World) -> tuple[Objects, Objects]:
    a = await populate(world, await world.team("team-a"))
    b = await populate(world, await world.team("team-b"))
    return a, b


# (method, path, body); "{x}" is the victim's id of x; "{own_x}" is the requester's own. Destructive
# requests come last, in an order where the owner's own replays of them all succeed.
CASES: list[tuple[str, str, dict[str, Any] | None]] = [
    ("GET", "/v1/agents/{agent}", None),
    ("PATCH", "/v1/agents/{agent}", {"name": "renamed"}),
    ("GET", "/v1/contacts/{contact}", None),
    ("PATCH", "/v1/contacts/{contact}", {"name": "renamed"}),
    ("GET", "/v1/phone-numbers/{number}", None),
    ("PATCH", "/v1/phone-numbers/{number}", {"label": "renamed"}),
    ("GET", "/v1/calls/{call}", None),
    ("POST", "/v1/web-calls", {"agent_id": "{agent}"}),
    ("POST", "/v1/web-calls", {"agent_id": "{own_agent}", "contact_id": "{contact}"}),
    ("POST", "/v1/web-calls/token", {"agent_id": "{agent}"}),
    ("POST", "/v1/phone-numbers", {"number": "{fresh_number}", "agent_id": "{agent}"}),
    ("PATCH", "/v1/phone-numbers/{own_number}", {"agent_id": "{agent}"}),
    ("POST", "/v1/calls/{call}/end", None),
    ("DELETE", "/v1/phone-numbers/{number}", None),
    ("DELETE", "/v1/contacts/{contact}", None),
    ("DELETE", "/v1/agents/{agent}", None),
]
# What the victim's objects look like from their owner's side, to check that nothing changed.
OWNED = {
    "agent": "/v1/agents/{}",
    "contact": "/v1/contacts/{}",
    "number": "/v1/phone-numbers/{}",
    "call": "/v1/calls/{}",
}


def fill(template: Any, *, requester: Objects, victim: Objects) -> Any:
    if isinstance(template, dict):
        return {k: fill(v, requester=requester, victim=victim) for k, v in template.items()}
    if not isinstance(template, str):
        return template
    values = {
        "agent": victim.agent,
        "contact": victim.contact,
        "number": victim.number,
        "call": victim.call,
        "own_agent": requester.agent,
        "own_number": requester.number,
        "fresh_number": fresh_number(),
    }
    return template.format(**values)


async def snapshot(world: World, owner: Objects) -> dict[str, Any]:
    out = {}
    for kind, url in OWNED.items():
        r = await world.client.get(url.format(getattr(owner, kind)), headers=owner.team.auth())
        assert r.status_code == 200, r.text
        out[kind] = r.json()
    return out


async def test_other_teams_objects_are_not_found(world: World, teams: tuple[Objects, Objects]) -> None:
    """Every route, one after the other on the same objects (a database per case would be slow)."""
    a, b = teams
    before = await snapshot(world, b)
    failures = []
    for method, path, body in CASES:
        url, payload = fill(path, requester=a, victim=b), fill(body, requester=a, victim=b)
        r = await world.client.request(method, url, json=payload, headers=a.team.auth())
        problem = r.json() if r.headers.get("content-type", "").startswith("application/") else {}
        if (
            r.status_code != 404
            or not r.headers["content-type"].startswith("application/problem+json")
            or problem.get("code") != "not_found"
            or problem.get("detail") == "no such route"
        ):
            failures.append(f"{method} {path} {body}: {r.status_code} {r.text}")
    assert not failures, "\n".join(failures)
    assert await snapshot(world, b) == before

    # The owner making the same requests succeeds: the 404s were about the team, not the routes.
    for method, path, body in CASES:
        url, payload = fill(path, requester=b, victim=b), fill(body, requester=b, victim=b)
        r = await world.client.request(method, url, json=payload, headers=b.team.auth())
        if r.status_code >= 300:
            failures.append(f"owner: {method} {path} {body}: {r.status_code} {r.text}")
    assert not failures, "\n".join(failures)


async def test_lists_show_only_own_objects(world: World, teams: tuple[Objects, Objects]) -> None:
    a, b = teams
    own = {"agents": a.agent, "contacts": a.contact, "phone-numbers": a.number, "calls": a.call}
    for resource, own_id in own.items():
        r = await world.client.get(f"/v1/{resource}", headers=a.team.auth())
        assert r.status_code == 200, r.text
        assert [item["id"] for item in r.json()["data"]] == [own_id], resource

    r = await world.client.get("/v1/calls", params={"agent_id": b.agent}, headers=a.team.auth())
    assert r.status_code == 200, r.text
    assert r.json()["data"] == []


async def test_keys_naming_another_teams_agent_reach_nothing(
    world: World, teams: tuple[Objects, Objects]
) -> None:
    """A publishable or shared key of team A bound to B's agent still cannot create B's calls."""
    a, b = teams
    publishable = await a.team.key(
        KeyType.PUBLISHABLE, allowed_origins=["https://a.example"], agent_ids=[b.agent]
    )
    shared = await a.team.key(KeyType.SHARED, agent_ids=[b.agent])
    r = await world.client.post(
        "/v1/web-calls/token",
        json={"agent_id": b.agent},
        headers={**a.team.auth(publishable), "Origin": "https://a.example"},
    )
    assert_problem(r, 404, "not_found")
    r = await world.client.post("/v1/web-calls/token", json={}, headers=a.team.auth(shared))
    assert_problem(r, 404, "not_found")
    r = await world.client.get("/v1/calls", headers=b.team.auth())
    assert [c["id"] for c in r.json()["data"]] == [b.call]
