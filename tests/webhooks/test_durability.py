"""Durability: a node stopped or killed mid-delivery loses nothing, and several nodes deliver once."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

from sqlalchemy import select

from callgate.store.models_webhooks import WebhookDelivery, WebhookEvent
from tests.support.node import Node
from tests.support.receiver import Receiver, Reply
from tests.support.world import World, WorldFactory
from tests.webhooks.conftest import FAST, add_endpoint, new_call


async def _event_ids(world: World) -> set[str]:
    async with world.runtime.db.read() as s:
        return set((await s.execute(select(WebhookEvent.id))).scalars())


async def _statuses(world: World) -> Counter[str]:
    async with world.runtime.db.read() as s:
        return Counter((await s.execute(select(WebhookDelivery.status))).scalars())


async def _until(predicate, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout
    while not await predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("timed out waiting")
        await asyncio.sleep(0.05)


async def test_a_runtime_stopped_mid_delivery_leaves_it_to_the_next(
    world_with: WorldFactory, receiver: Receiver
) -> None:
    receiver.script.append(Reply(delay=30))  # the first attempt hangs
    async with world_with() as first:
        team = await first.team("acme")
        endpoint = await add_endpoint(first, team, receiver.url, events=["call.created"])
        receiver.secrets = {"endpoint": endpoint["secret"]}
        await new_call(first, team)

        async def arrived() -> bool:
            return receiver.arrivals >= 1

        await _until(arrived)
    # The first node is gone with its attempt in flight; the delivery is still pending, leased.
    async with world_with(webhooks_dispatch=False) as observer:
        assert await _statuses(observer) == Counter({"pending": 1})
        ids = await _event_ids(observer)
    async with world_with() as second:
        hits = await receiver.wait_for(1, timeout=15)

        async def succeeded() -> bool:
            return await _statuses(second) == Counter({"succeeded": 1})

        await _until(succeeded)
    assert {h.id for h in hits} == ids and len(hits) == 1
    assert hits[0].verified_by == ["endpoint"]
    assert [h.status for h in receiver.all()] == [499, 204]  # the abandoned attempt, then the delivery


async def test_kill_9_with_deliveries_pending_loses_and_doubles_nothing(
    world: World, receiver: Receiver, database_url: str, tmp_path: Path
) -> None:
    await world.runtime.webhooks.stop()  # this in-test node only writes and reads
    team = await world.team("acme")
    endpoint = await add_endpoint(world, team, receiver.url, events=["call.created"])
    receiver.secrets = {"endpoint": endpoint["secret"]}
    for _ in range(12):
        await new_call(world, team)
    all_ids = await _event_ids(world)
    assert len(all_ids) == 12
    # The node acknowledges 5 deliveries, then every answer hangs: kill -9 it with the rest in flight.
    receiver.script.extend([Reply()] * 5)
    receiver.default = Reply(delay=30)
    node_settings = dict(FAST)
    node = Node(database_url, tmp_path / "node1", **node_settings)
    await asyncio.to_thread(node.start)
    try:

        async def five_recorded_and_more_in_flight() -> bool:
            status = await _statuses(world)
            return status["succeeded"] == 5 and receiver.arrivals >= 6

        await _until(five_recorded_and_more_in_flight)
    finally:
        node.kill()
    assert (await _statuses(world))["pending"] == 7
    receiver.default = Reply()
    async with Node(database_url, tmp_path / "node2", **node_settings) as _:

        async def all_succeeded() -> bool:
            return await _statuses(world) == Counter({"succeeded": 12})

        await _until(all_succeeded, timeout=60)
    acked = Counter(h.id for h in receiver.acked())
    assert set(acked) == all_ids
    assert all(n == 1 for n in acked.values()), acked
    assert all(h.verified_by == ["endpoint"] for h in receiver.acked())


async def test_two_processes_draining_one_outbox_deliver_each_event_once(
    world: World, receiver: Receiver, database_url: str, tmp_path: Path
) -> None:
    team = await world.team("acme")
    r = await world.client.patch(
        "/v1/agents/" + team.agent_id, json={"webhook_url": receiver.url + "/agent"}, headers=team.auth()
    )
    assert r.status_code == 200
    await add_endpoint(world, team, receiver.url, events=["call.created", "call.ended"])
    # Nodes that never ran their dispatcher: stop this one's so that only the two processes drain.
    await world.runtime.webhooks.stop()
    for _ in range(40):
        call_id = await new_call(world, team)
        await world.client.post(f"/v1/calls/{call_id}/end", headers=team.auth())
    total = sum((await _statuses(world)).values())
    assert total == 40 * 2 * 2  # two events, two destinations
    # Generous timeouts and leases: this test is about claims, not about a slow receiver (a request that
    # times out but was processed is sent again: delivery is at least once).
    settings = {**FAST, "webhooks_timeout_s": 10, "webhooks_lease_s": 60}
    nodes = [Node(database_url, tmp_path / f"n{i}", **settings) for i in range(2)]
    await asyncio.gather(*(asyncio.to_thread(n.start) for n in nodes))
    try:

        async def drained() -> bool:
            return await _statuses(world) == Counter({"succeeded": total})

        await _until(drained, timeout=90)
    finally:
        await asyncio.gather(*(asyncio.to_thread(n.stop) for n in nodes))
    hits = receiver.acked()
    per_destination = Counter((h.path, h.id) for h in hits)
    assert len(per_destination) == total
    doubled = [k for k, n in per_destination.items() if n > 1]
    assert all(n == 1 for n in per_destination.values()), doubled
    for path in ("/hooks", "/hooks/agent"):
        order = [h.payload for h in hits if h.path == path]
        for call_id in {p["data"]["id"] for p in order}:
            assert [p["type"] for p in order if p["data"]["id"] == call_id] == ["call.created", "call.ended"]
