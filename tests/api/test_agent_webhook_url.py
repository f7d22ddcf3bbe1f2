"""An agent's ``webhook_url`` passes the outbound guard when it is saved, on create and on update, natively
and through the Vocode dialect's inline agent (issue 11, defect 7). Deliveries are checked again later;
this is about refusing the URL up front with a 422 naming the field."""

from __future__ import annotations

import pytest

from tests.api.helpers import assert_problem, field_names
from tests.support.world import PROMPT_AGENT, World, WorldFactory

REFUSED = [
    "http://127.0.0.1/",
    "http://169.254.169.254/latest/meta-data/",
    "http://10.0.0.5:8080/hook",
    "http://[::1]/",
    "http://[::ffff:127.0.0.1]/",
]
PUBLIC = "https://93.184.215.14/hook"  # a public address: passes the guard without DNS


@pytest.mark.parametrize("url", REFUSED)
async def test_create_with_a_private_webhook_url_is_422_and_not_saved(world: World, url: str) -> None:
    team = await world.team("acme")
    r = await world.client.post("/v1/agents", json={**PROMPT_AGENT, "webhook_url": url}, headers=team.auth())
    assert field_names(assert_problem(r, 422, "outbound_refused")) == {"body.webhook_url"}
    listed = (await world.client.get("/v1/agents", headers=team.auth())).json()["data"]
    assert [a["id"] for a in listed] == [team.agent_id]


@pytest.mark.parametrize("url", REFUSED)
async def test_update_to_a_private_webhook_url_is_422_and_changes_nothing(world: World, url: str) -> None:
    team = await world.team("acme")
    path = f"/v1/agents/{team.agent_id}"
    r = await world.client.patch(path, json={"webhook_url": url, "name": "renamed"}, headers=team.auth())
    assert field_names(assert_problem(r, 422, "outbound_refused")) == {"body.webhook_url"}
    agent = (await world.client.get(path, headers=team.auth())).json()
    assert (agent["webhook_url"], agent["name"]) == (None, "helper")


async def test_public_webhook_url_is_saved_and_can_be_cleared(world: World) -> None:
    team = await world.team("acme")
    r = await world.client.post(
        "/v1/agents", json={**PROMPT_AGENT, "webhook_url": PUBLIC}, headers=team.auth()
    )
    assert r.status_code == 201, r.text
    assert r.json()["webhook_url"] == PUBLIC
    path = f"/v1/agents/{r.json()['id']}"
    cleared = await world.client.patch(path, json={"webhook_url": None}, headers=team.auth())
    assert cleared.status_code == 200 and cleared.json()["webhook_url"] is None


async def test_private_urls_pass_when_the_node_allows_them(world_with: WorldFactory) -> None:
    async with world_with(webhooks_allow_private=True) as world:
        team = await world.team("acme")
        r = await world.client.post(
            "/v1/agents", json={**PROMPT_AGENT, "webhook_url": "http://127.0.0.1:9/"}, headers=team.auth()
        )
        assert r.status_code == 201, r.text
        # Cloud metadata addresses stay refused even then.
        r = await world.client.post(
            "/v1/agents", json={**PROMPT_AGENT, "webhook_url": REFUSED[1]}, headers=team.auth()
        )
        assert_problem(r, 422, "outbound_refused")


@pytest.mark.parametrize("url", REFUSED[:2])
async def test_vocode_inline_agent_webhook_is_checked_in_fastapi_shape(world: World, url: str) -> None:
    team = await world.team("acme")
    await world.client.post("/v1/phone-numbers", json={"number": "+14155550100"}, headers=team.auth())
    agent = {
        "prompt": "Confirm the appointment.",
        "voice": {"type": "voice_azure", "voice_name": "en-US-JennyNeural"},
        "webhook": {"subscriptions": ["event_phone_call_ended"], "url": url},
    }
    r = await world.client.post(
        "/dialects/vocode/v1/calls/create",
        json={"from_number": "+14155550100", "to_number": "+14155550199", "agent": agent},
        headers=team.auth(),
    )
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/json"
    assert [e["loc"] for e in r.json()["detail"]] == [["body", "agent", "webhook", "url"]]
    agents = (await world.client.get("/v1/agents", headers=team.auth())).json()["data"]
    assert [a["id"] for a in agents] == [team.agent_id]  # no inline agent left behind
