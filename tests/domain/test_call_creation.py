"""Creating calls on the batched write path (``domain/call_creation.py``, ``Database.write_many``): what a
batch of creations refuses, one by one; the live-call cap under concurrent creations and joins on two
nodes; a call and its ``call.created`` event committing together or not at all."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from callgate.domain import calls
from callgate.domain.calls import join_call
from callgate.domain.lifecycle import CallStatus
from callgate.errors import ConcurrencyLimited, Conflict, ValidationFailed
from callgate.runtime import Runtime
from callgate.store.models import Call, CallEvent
from callgate.store.models_webhooks import WebhookDelivery, WebhookEvent
from tests.api.helpers import assert_problem
from tests.support.world import Team, World, WorldFactory


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    return {"webhooks_allow_private": True}  # an agent webhook_url on loopback (nothing listens)


async def create(world: World, team: Team, agent_id: str | None = None) -> httpx.Response:
    body = {"agent_id": agent_id or team.agent_id}
    return await world.client.post("/v1/web-calls", json=body, headers=team.auth())


async def count(runtime: Runtime, model: Any, **where: Any) -> int:
    async with runtime.db.read() as s:
        stmt = select(func.count()).select_from(model).filter_by(**where)
        return int((await s.execute(stmt)).scalar_one())


async def test_one_batch_refuses_unknown_deleted_and_other_team_agents_one_by_one(world: World) -> None:
    acme, rival = await world.team("acme"), await world.team("rival")
    deleted = await world.client.post("/v1/agents", json={"name": "old", "prompt": "x"}, headers=acme.auth())
    deleted_id = deleted.json()["id"]
    assert (await world.client.delete(f"/v1/agents/{deleted_id}", headers=acme.auth())).status_code == 204

    # Sent together, these wait for the writer together: one call of create_calls decides them all.
    asks = [acme.agent_id, "agent_nope", deleted_id, rival.agent_id] * 5
    answers = await asyncio.gather(*(create(world, acme, agent) for agent in asks))
    for agent, r in zip(asks, answers, strict=True):
        if agent == acme.agent_id:
            assert r.status_code == 201, r.text
            assert r.json()["agent_id"] == acme.agent_id and r.json()["status"] == "created"
        else:
            assert_problem(r, 404, "not_found")
            assert agent in r.json()["detail"]
    assert await count(world.runtime, Call, team_id=acme.id) == 5
    assert await count(world.runtime, Call, team_id=rival.id) == 0
    # The rival's agent works for the rival.
    assert (await create(world, rival)).status_code == 201


async def test_the_cap_holds_under_concurrent_creations_and_joins_on_two_nodes(
    world: World, world_with: WorldFactory
) -> None:
    cap = 3
    team = await world.team("acme", max_live_calls=cap)
    async with world_with() as other:
        nodes = [world, other]
        # Created calls are not live: all of them are accepted, however many wait together.
        created = await asyncio.gather(*(create(nodes[i % 2], team) for i in range(16)))
        assert [r.status_code for r in created] == [201] * 16
        ids = [r.json()["id"] for r in created]

        async def join(i: int, call_id: str) -> bool:
            runtime = nodes[i % 2].runtime
            now = runtime.clock.now()
            try:
                await runtime.db.write(lambda s: join_call(s, team_id=team.id, call_id=call_id, now=now))
            except ConcurrencyLimited:
                return False
            return True

        joined = await asyncio.gather(*(join(i, call_id) for i, call_id in enumerate(ids)))
        assert sum(joined) == cap
        assert await count(world.runtime, Call, team_id=team.id, status=CallStatus.CONNECTING.value) == cap

        # At the cap, every creation on either node is refused, and nothing is written for it.
        refused = await asyncio.gather(*(create(nodes[i % 2], team) for i in range(8)))
        for r in refused:
            assert_problem(r, 429, "concurrency_limit")
        assert await count(world.runtime, Call, team_id=team.id) == 16


async def test_a_call_and_its_created_event_commit_together(world: World) -> None:
    team = await world.team("acme")
    r = await world.client.patch(
        f"/v1/agents/{team.agent_id}",
        json={"webhook_url": "http://127.0.0.1:9/agent"},
        headers=team.auth(),
    )
    assert r.status_code == 200, r.text
    runtime = world.runtime
    now = runtime.clock.now()

    def pending(call_id: str) -> calls.PendingCall:
        spec = calls.NewCall(
            agent_id=team.agent_id, transport="websocket", mode="audio", variables={}, metadata={}, id=call_id
        )
        return calls.PendingCall(team.id, spec, now, now + timedelta(minutes=1))

    # A batch where one item breaks a constraint (a duplicate id): the others are written with their
    # events; the broken one gets a 409 and leaves nothing behind.
    outcomes = await asyncio.gather(
        *(runtime.db.write_many(calls.create_calls, pending(i)) for i in ("call_a", "call_a", "call_b")),
        return_exceptions=True,
    )
    assert isinstance(outcomes[0], calls.CreatedCall) and outcomes[0].id == "call_a"
    assert isinstance(outcomes[1], Conflict)
    assert isinstance(outcomes[2], calls.CreatedCall) and outcomes[2].id == "call_b"
    for call_id in ("call_a", "call_b"):
        assert await count(runtime, Call, id=call_id) == 1
        assert await count(runtime, CallEvent, call_id=call_id, type="call.created") == 1
        assert await count(runtime, WebhookEvent, call_id=call_id, type="call.created") == 1
        # The agent's webhook_url gets the event.
        assert await count(runtime, WebhookDelivery, call_id=call_id, target="agent") == 1
    async with runtime.db.read() as s:
        event = (await s.execute(select(WebhookEvent).filter_by(call_id="call_b"))).scalar_one()
    assert event.payload["type"] == "call.created" and event.payload["data"]["id"] == "call_b"
    assert event.payload["data"]["status"] == "created" and event.payload["data"]["transcript"] == []

    # A write that creates a call and then fails rolls back the call and its events alike.
    async def fails(s: Any) -> None:
        await calls.create_calls(s, [pending("call_c")])
        raise ValidationFailed("changed my mind")

    try:
        await runtime.db.write(fails)
    except ValidationFailed:
        pass
    else:
        raise AssertionError("the write should have failed")
    for model, where in ((Call, {"id": "call_c"}), (CallEvent, {"call_id": "call_c"})):
        assert await count(runtime, model, **where) == 0
    assert await count(runtime, WebhookEvent, call_id="call_c") == 0
    assert await count(runtime, WebhookDelivery, call_id="call_c") == 0
