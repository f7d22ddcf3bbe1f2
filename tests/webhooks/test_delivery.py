"""Delivery end to end: a real receiver verifies every request with the ``standardwebhooks`` library."""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter

import pytest

from callgate.domain.lifecycle import EndReason
from tests.support.receiver import Receiver, Reply
from tests.support.world import World, WorldFactory
from tests.webhooks.conftest import add_endpoint, new_call, run_call

LIFECYCLE = ["call.created", "call.started", "transcript.final", "transcript.final", "call.ended"]


def types_of(hits: list) -> list[str]:  # type: ignore[type-arg]
    return [h.payload["type"] for h in hits]


async def test_a_call_s_life_arrives_signed_in_order_with_the_api_s_view(
    world: World, receiver: Receiver
) -> None:
    team = await world.team("acme")
    endpoint = await add_endpoint(world, team, receiver.url)
    receiver.secrets = {"endpoint": endpoint["secret"]}
    call_id = await new_call(world, team)
    await run_call(world, team, call_id)

    # The agent has no LLM configured: its analysis fails, and says so in call.analyzed.
    hits = await receiver.wait_for(6)
    await asyncio.sleep(0.2)  # nothing more comes
    assert types_of(receiver.acked()) == [*LIFECYCLE, "call.analyzed"]
    assert all(h.verified_by == ["endpoint"] for h in hits), [h.verified_by for h in hits]
    assert len({h.id for h in hits}) == len(hits)
    assert all(h.id.startswith("msg_") for h in hits)
    assert all(h.headers["content-type"] == "application/json" for h in hits)

    view = (await world.client.get(f"/v1/calls/{call_id}", headers=team.auth())).json()
    assert hits[-1].payload["data"] == view
    assert view["analysis"]["status"] == "failed" and "no llm engine" in view["analysis"]["error"]
    ended = next(h for h in hits if h.payload["type"] == "call.ended")
    assert ended.payload["data"] == {**view, "analysis": None}  # the call as it was when it ended
    assert ended.payload["data"]["status"] == "ended"
    created = hits[0].payload
    assert created["data"]["status"] == "created"  # the call as it was when the event happened
    assert created["timestamp"].endswith("Z")
    turn = next(h for h in hits if h.payload["type"] == "transcript.final").payload["data"]
    assert turn["call_id"] == call_id and turn["role"] == "agent" and turn["seq"] == 1


async def test_a_receiver_down_for_a_while_gets_everything_once_in_order(
    world_with: WorldFactory, receiver: Receiver
) -> None:
    async with world_with(webhooks_max_attempts=50) as world:
        await _down_then_up(world, receiver)


async def _down_then_up(world: World, receiver: Receiver) -> None:
    team = await world.team("acme")
    endpoint = await add_endpoint(world, team, receiver.url, events=sorted(set(LIFECYCLE)))
    receiver.secrets = {"endpoint": endpoint["secret"]}
    receiver.stop()
    call_ids = [await new_call(world, team) for _ in range(3)]
    for call_id in call_ids:
        await run_call(world, team, call_id)
    # Let attempts fail against the closed port, then come back.
    await asyncio.sleep(0.6)
    r = await world.client.get("/v1/webhook-deliveries", params={"status": "pending"}, headers=team.auth())
    assert r.status_code == 200
    failed = [d for d in r.json()["data"] if d["attempts"] > 0]
    assert failed and all(d["last_error"] for d in failed)
    receiver.start()

    hits = await receiver.wait_for(15, timeout=30)
    counts = Counter(h.id for h in hits)
    assert all(n == 1 for n in counts.values()), counts
    assert all(h.verified_by == ["endpoint"] for h in hits)
    for call_id in call_ids:
        mine = [h.payload["type"] for h in hits if _call_of(h.payload) == call_id]
        assert mine == LIFECYCLE, (call_id, mine)


def _call_of(payload: dict) -> str:  # type: ignore[type-arg]
    data = payload["data"]
    return str(data.get("call_id") or data["id"])


async def test_failing_receiver_is_retried_then_dead_and_every_attempt_is_recorded(
    world: World, receiver: Receiver
) -> None:
    team = await world.team("acme")
    endpoint = await add_endpoint(world, team, receiver.url, events=["call.created"])
    receiver.default = Reply(status=500, body="boom: database down")
    await new_call(world, team)
    await receiver.wait_for(4, acked=False)  # webhooks_max_attempts=4
    delivery = await _wait_status(world, team, "dead")
    assert delivery["attempts"] == 4 and delivery["last_status_code"] == 500
    assert delivery["endpoint_id"] == endpoint["id"] and delivery["next_attempt_at"] is None

    detail = (await world.client.get(f"/v1/webhook-deliveries/{delivery['id']}", headers=team.auth())).json()
    history = detail["history"]
    assert [a["number"] for a in history] == [1, 2, 3, 4]
    assert all(a["status_code"] == 500 and a["response_excerpt"] == "boom: database down" for a in history)
    assert all(a["duration_ms"] >= 0 and a["error"] == "HTTP 500" for a in history)
    assert detail["payload"]["type"] == "call.created"
    hits = receiver.all()
    gaps = [b.at - a.at for a, b in itertools.pairwise(hits)]
    assert all(g >= 0.02 for g in gaps), gaps  # backoff: never back to back
    assert len({h.id for h in hits}) == 1  # the same webhook-id on every retry

    receiver.default = Reply(status=200)
    r = await world.client.post(f"/v1/webhook-deliveries/{delivery['id']}/retry", headers=team.auth())
    assert r.status_code == 202 and r.json()["status"] == "pending"
    await receiver.wait_for(1)
    assert (await _wait_status(world, team, "succeeded"))["id"] == delivery["id"]


async def test_timeouts_and_retry_after_are_honoured(world: World, receiver: Receiver) -> None:
    team = await world.team("acme")
    await add_endpoint(world, team, receiver.url, events=["call.created"])
    receiver.script.extend(
        [Reply(status=204, delay=1.6), Reply(status=429, headers={"Retry-After": "0"}), Reply(status=204)]
    )
    await new_call(world, team)
    delivery = await _wait_status(world, team, "succeeded", timeout=20)
    detail = (await world.client.get(f"/v1/webhook-deliveries/{delivery['id']}", headers=team.auth())).json()
    history = detail["history"]
    assert "no answer within 1 s" in history[0]["error"] and history[0]["status_code"] is None
    assert history[1]["status_code"] == 429 and history[2]["status_code"] == 204


async def _wait_status(world: World, team, status: str, timeout: float = 15.0) -> dict:  # type: ignore[no-untyped-def, type-arg]
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        r = await world.client.get("/v1/webhook-deliveries", params={"status": status}, headers=team.auth())
        assert r.status_code == 200, r.text
        if r.json()["data"]:
            found: dict = r.json()["data"][0]  # type: ignore[type-arg]
            return found
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"no {status} delivery")
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("overlap_s", [3600, 0])
async def test_secret_rotation_signs_with_both_during_the_overlap(
    world: World, receiver: Receiver, overlap_s: int
) -> None:
    team = await world.team("acme")
    endpoint = await add_endpoint(world, team, receiver.url, events=["call.created"])
    r = await world.client.post(
        f"/v1/webhook-endpoints/{endpoint['id']}/rotate-secret",
        json={"overlap_s": overlap_s},
        headers=team.auth(),
    )
    assert r.status_code == 200, r.text
    rotated = r.json()
    assert rotated["secret"].startswith("whsec_") and rotated["secret"] != endpoint["secret"]
    receiver.secrets = {"old": endpoint["secret"], "new": rotated["secret"]}
    await new_call(world, team)
    (hit,) = await receiver.wait_for(1)
    if overlap_s:
        assert rotated["previous_secret_expires_at"] is not None
        assert sorted(hit.verified_by) == ["new", "old"]
        assert len(hit.headers["webhook-signature"].split(" ")) == 2
    else:
        assert rotated["previous_secret_expires_at"] is None
        assert hit.verified_by == ["new"]


async def test_agent_and_call_urls_are_destinations_signed_with_the_team_secret(
    world: World, receiver: Receiver
) -> None:
    team = await world.team("acme")
    agent_url, call_url = receiver.url + "/agent", receiver.url + "/call"
    r = await world.client.patch(
        f"/v1/agents/{team.agent_id}", json={"webhook_url": agent_url}, headers=team.auth()
    )
    assert r.status_code == 200, r.text
    r = await world.client.post(
        "/v1/webhook-signing-secret/rotate", json={"overlap_s": 0}, headers=team.auth()
    )
    receiver.secrets = {"team": r.json()["secret"]}
    await new_call(world, team, webhook_url=call_url)
    await new_call(world, team, webhook_url=agent_url)  # the same URL twice: one delivery
    hits = await receiver.wait_for(3)
    await asyncio.sleep(0.2)
    paths = sorted(h.path for h in receiver.acked())
    assert paths == ["/hooks/agent", "/hooks/agent", "/hooks/call"]
    assert all(h.verified_by == ["team"] for h in hits)
    r = await world.client.get("/v1/webhook-deliveries", headers=team.auth())
    assert sorted(d["target"] for d in r.json()["data"]) == ["agent", "call", "call"]  # the call's wins


async def test_event_and_agent_filters(world: World, receiver: Receiver) -> None:
    team = await world.team("acme")
    other = await world.client.post(
        "/v1/agents", json={"name": "other", "prompt": "Be brief."}, headers=team.auth()
    )
    other_id = other.json()["id"]
    await add_endpoint(world, team, receiver.url + "/a", events=["call.ended"], agent_ids=[other_id])
    await add_endpoint(world, team, receiver.url + "/b", events=["transcript.partial"])
    first = await new_call(world, team)
    await run_call(world, team, first)
    second = await new_call(world, team, other_id)
    await run_call(world, team, second, reason=EndReason.AGENT_ENDED)
    (hit,) = await receiver.wait_for(1)
    await asyncio.sleep(0.3)
    assert len(receiver.all()) == 1
    assert hit.path == "/hooks/a" and hit.payload["data"]["id"] == second


async def test_replay_a_call_or_a_time_range_with_the_same_webhook_ids(
    world: World, receiver: Receiver
) -> None:
    team = await world.team("acme")
    lifecycle = ["call.created", "call.started", "transcript.final", "call.ended"]
    endpoint = await add_endpoint(world, team, receiver.url, events=lifecycle)
    receiver.secrets = {"endpoint": endpoint["secret"]}
    first, second = await new_call(world, team), await new_call(world, team)
    await run_call(world, team, first)
    originals = await receiver.wait_for(6)
    first_ids = [h.id for h in originals if _call_of(h.payload) == first]
    assert len(first_ids) == 5

    r = await world.client.post("/v1/webhook-replays", json={"call_id": first}, headers=team.auth())
    # Every event of the call is replayed (a late one, e.g. the recording, has no subscriber here).
    assert r.status_code == 202 and r.json()["deliveries"] == 5 and r.json()["next_cursor"] is None
    assert r.json()["events"] >= 5
    hits = await receiver.wait_for(11)
    assert [h.id for h in hits[6:]] == first_ids  # in order, same ids, signed again
    assert all(h.verified_by == ["endpoint"] for h in hits)

    r = await world.client.post(
        "/v1/webhook-replays",
        json={
            "created_after": "2000-01-01T00:00:00Z",
            "created_before": "2999-01-01T00:00:00Z",
            "event_types": ["call.created"],
            "endpoint_id": endpoint["id"],
        },
        headers=team.auth(),
    )
    assert r.json() == {"deliveries": 2, "events": 2, "next_cursor": None}
    hits = await receiver.wait_for(13)
    assert sorted(_call_of(h.payload) for h in hits[11:]) == sorted([first, second])


async def test_deleting_an_endpoint_cancels_its_pending_deliveries(world: World, receiver: Receiver) -> None:
    team = await world.team("acme")
    receiver.default = Reply(status=503)
    endpoint = await add_endpoint(world, team, receiver.url, events=["call.created"])
    await new_call(world, team)
    await receiver.wait_for(1, acked=False)
    r = await world.client.delete(f"/v1/webhook-endpoints/{endpoint['id']}", headers=team.auth())
    assert r.status_code == 204
    delivery = await _wait_status(world, team, "cancelled")
    assert delivery["last_error"] == "the endpoint was deleted"
    seen = len(receiver.all())
    await asyncio.sleep(0.4)
    assert len(receiver.all()) == seen
    r = await world.client.post(f"/v1/webhook-deliveries/{delivery['id']}/retry", headers=team.auth())
    assert r.status_code == 404  # its endpoint is gone


async def test_recording_available_follows_the_end(world: World, receiver: Receiver) -> None:
    team = await world.team("acme")
    await add_endpoint(world, team, receiver.url, events=["call.ended", "call.recording.available"])
    call_id = await new_call(world, team)
    await run_call(world, team, call_id, recording="/tmp/none.wav")
    hits = await receiver.wait_for(2)
    assert types_of(hits) == ["call.ended", "call.recording.available"]
    assert hits[1].payload["data"]["recording_url"] == f"/v1/calls/{call_id}/recording"


async def test_retrying_a_pending_delivery_is_a_conflict(world: World, receiver: Receiver) -> None:
    team = await world.team("acme")
    receiver.default = Reply(status=500)
    await add_endpoint(world, team, receiver.url, events=["call.created"])
    await new_call(world, team)
    delivery = await _wait_status(world, team, "pending")
    r = await world.client.post(f"/v1/webhook-deliveries/{delivery['id']}/retry", headers=team.auth())
    assert r.status_code == 409 and r.headers["content-type"].startswith("application/problem+json")
