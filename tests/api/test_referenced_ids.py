"""Ids a request refers to are checked before anything is written: a missing or foreign object is a 404
in the API's shape, never a 503 "the database write failed" (issue 11, defect 6)."""

from __future__ import annotations

import pytest

from tests.api.helpers import assert_problem
from tests.support.world import World


@pytest.mark.parametrize("agent_id", ["", "agt_missing", "  "])
async def test_phone_number_with_an_unknown_agent_is_404_and_not_saved(world: World, agent_id: str) -> None:
    team = await world.team("acme")
    r = await world.client.post(
        "/v1/phone-numbers", json={"number": "+15550001111", "agent_id": agent_id}, headers=team.auth()
    )
    assert_problem(r, 404, "not_found")
    listed = await world.client.get("/v1/phone-numbers", headers=team.auth())
    assert listed.json()["data"] == []


async def test_phone_number_with_another_teams_agent_is_404(world: World) -> None:
    team, other = await world.team("acme"), await world.team("rival")
    r = await world.client.post(
        "/v1/phone-numbers", json={"number": "+15550001111", "agent_id": other.agent_id}, headers=team.auth()
    )
    assert_problem(r, 404, "not_found")


async def test_phone_number_update_to_an_unknown_agent_is_404_and_changes_nothing(world: World) -> None:
    team = await world.team("acme")
    created = await world.client.post(
        "/v1/phone-numbers", json={"number": "+15550001111", "agent_id": team.agent_id}, headers=team.auth()
    )
    assert created.status_code == 201, created.text
    number_id = created.json()["id"]
    r = await world.client.patch(f"/v1/phone-numbers/{number_id}", json={"agent_id": ""}, headers=team.auth())
    assert_problem(r, 404, "not_found")
    after = await world.client.get(f"/v1/phone-numbers/{number_id}", headers=team.auth())
    assert after.json()["agent_id"] == team.agent_id
