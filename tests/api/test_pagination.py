"""Cursor pagination (newest first, no duplicates, no gaps) and the call list's filters."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from callgate.domain import calls
from tests.api.helpers import assert_problem
from tests.support.world import PROMPT_AGENT, Team, World


async def all_pages(world: World, team: Team, path: str, **params: Any) -> list[list[dict[str, Any]]]:
    pages: list[list[dict[str, Any]]] = []
    cursor = None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        r = await world.client.get(path, params=query, headers=team.auth())
        assert r.status_code == 200, r.text
        pages.append(r.json()["data"])
        cursor = r.json()["next_cursor"]
        if cursor is None:
            return pages
        assert len(pages) < 20, "pagination does not end"


async def test_agents_page_by_three(world: World) -> None:
    team = await world.team("acme")
    r = await world.client.delete(f"/v1/agents/{team.agent_id}", headers=team.auth())
    assert r.status_code == 204  # deleted agents are not listed
    created = []
    for i in range(7):
        r = await world.client.post("/v1/agents", json={**PROMPT_AGENT, "name": f"a{i}"}, headers=team.auth())
        assert r.status_code == 201, r.text
        created.append(r.json()["id"])

    pages = await all_pages(world, team, "/v1/agents", limit=3)
    assert [len(p) for p in pages] == [3, 3, 1]
    ids = [a["id"] for page in pages for a in page]
    assert len(set(ids)) == 7
    assert ids == created[::-1]  # newest first


async def test_rows_created_at_the_same_instant_are_neither_lost_nor_repeated(world: World) -> None:
    team = await world.team("acme")
    now = world.runtime.clock.now()
    spec = calls.NewCall(
        agent_id=team.agent_id, transport="websocket", mode="audio", variables={}, metadata={}
    )
    made = []
    for _ in range(5):
        call = await world.runtime.db.write(
            lambda s: calls.create_call(s, team_id=team.id, spec=spec, now=now, join_deadline=now)
        )
        made.append(call.id)
    pages = await all_pages(world, team, "/v1/calls", limit=2)
    assert [len(p) for p in pages] == [2, 2, 1]
    assert sorted(c["id"] for page in pages for c in page) == sorted(made)


async def test_contacts_and_numbers_paginate(world: World) -> None:
    team = await world.team("acme")
    for i in range(4):
        await world.client.post("/v1/contacts", json={"name": f"c{i}"}, headers=team.auth())
        await world.client.post(
            "/v1/phone-numbers", json={"number": f"+4420790000{i:02d}"}, headers=team.auth()
        )
    for path in ("/v1/contacts", "/v1/phone-numbers"):
        pages = await all_pages(world, team, path, limit=3)
        assert [len(p) for p in pages] == [3, 1], path
        assert len({item["id"] for page in pages for item in page}) == 4


async def test_call_filters(world: World) -> None:
    team = await world.team("acme")
    r = await world.client.post("/v1/agents", json={**PROMPT_AGENT, "name": "second"}, headers=team.auth())
    second_agent = r.json()["id"]
    base = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)

    async def make(agent_id: str, minute: int) -> str:
        spec = calls.NewCall(
            agent_id=agent_id, transport="websocket", mode="audio", variables={}, metadata={}
        )
        at = base + timedelta(minutes=minute)
        call = await world.runtime.db.write(
            lambda s: calls.create_call(s, team_id=team.id, spec=spec, now=at, join_deadline=at)
        )
        return str(call.id)

    first = [await make(team.agent_id, m) for m in range(4)]  # 12:00 .. 12:03
    second = [await make(second_agent, m) for m in range(4, 6)]  # 12:04, 12:05
    ended = first[1]
    r = await world.client.post(f"/v1/calls/{ended}/end", headers=team.auth())
    assert r.status_code == 200, r.text

    async def ids(**params: Any) -> list[str]:
        return [
            c["id"] for page in await all_pages(world, team, "/v1/calls", limit=2, **params) for c in page
        ]

    assert await ids() == (first + second)[::-1]
    assert await ids(agent_id=second_agent) == second[::-1]
    assert await ids(status="ended") == [ended]
    assert await ids(status="created", agent_id=team.agent_id) == [first[3], first[2], first[0]]
    # created_after is inclusive, created_before exclusive; any timezone may be given.
    assert await ids(created_after="2030-01-01T12:02:00Z") == (first[2:] + second)[::-1]
    assert await ids(created_before="2030-01-01T12:02:00Z") == first[:2][::-1]
    assert await ids(created_after="2030-01-01T14:01:00+02:00", created_before="2030-01-01T12:05:00Z") == [
        second[0],
        first[3],
        first[2],
        first[1],
    ]
    assert await ids(agent_id="agt_unknown") == []


async def test_end_twice_is_409(world: World) -> None:
    team = await world.team("acme")
    call = (
        await world.client.post("/v1/web-calls", json={"agent_id": team.agent_id}, headers=team.auth())
    ).json()
    r = await world.client.post(f"/v1/calls/{call['id']}/end", headers=team.auth())
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["end_reason"]) == ("ended", "api_request")
    r = await world.client.post(f"/v1/calls/{call['id']}/end", json={"reason": "again"}, headers=team.auth())
    assert_problem(r, 409, "illegal_transition")
    r = await world.client.get(f"/v1/calls/{call['id']}", headers=team.auth())
    assert r.json()["end_reason"] == "api_request"


async def test_end_reason_text_is_kept_on_the_event(world: World) -> None:
    team = await world.team("acme")
    call = (
        await world.client.post("/v1/web-calls", json={"agent_id": team.agent_id}, headers=team.auth())
    ).json()
    r = await world.client.post(
        f"/v1/calls/{call['id']}/end", json={"reason": "customer asked"}, headers=team.auth()
    )
    assert r.status_code == 200, r.text
    async with world.runtime.db.read() as s:
        events = await calls.list_events(s, call_id=call["id"])
    assert events[-1].type == "call.ended"
    assert "customer asked" in str(events[-1].data)
