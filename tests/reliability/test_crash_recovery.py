"""kill -9 a node with live calls, restart it: no call stays live, no turn or webhook is lost or doubled.

Each round a real `callgate` process (uvicorn on the app factory) holds three live text calls, each with
one exchange recorded; it is killed with SIGKILL and a new process is started on the same database. The
new process's lease sweep must end the dead node's calls ``node_lost`` (``call.failed``) within 30 s.
An in-test node on the same database creates the calls and observes; it runs no sweep and no dispatch.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from callgate.flows.demo import demo_flow
from tests.support.node import Node
from tests.support.receiver import Receiver
from tests.support.rtvi_client import RTClient
from tests.support.world import Team, World, WorldFactory

ROUNDS = int(os.environ.get("CALLGATE_KILL_ROUNDS", "5"))
"""kill -9 rounds per engine (``CALLGATE_KILL_ROUNDS=10`` for the longer run in RELIABILITY.md)."""
CALLS_PER_ROUND = 3
NODE = {
    "node_lease_s": 2,
    "sweep_interval_s": 1,
    "webhooks_allow_private": True,
    "webhooks_poll_interval_s": 0.05,
    "webhooks_backoff_base_s": 0.05,
    "webhooks_timeout_s": 2,
    "max_loop_lag_ms": 0,
    "max_stt_wait_ms": 0,
}


async def _flow_agent(world: World, team: Team) -> str:
    body = {"name": "clinic", "flow": demo_flow().model_dump(mode="json", exclude_none=True)}
    r = await world.client.post("/v1/agents", json=body, headers=team.auth())
    assert r.status_code == 201, r.text
    agent_id: str = r.json()["id"]
    return agent_id


async def _call(world: World, team: Team, agent_id: str) -> tuple[str, str]:
    r = await world.client.post(
        "/v1/web-calls", json={"agent_id": agent_id, "mode": "text"}, headers=team.auth()
    )
    assert r.status_code == 201, r.text
    body = r.json()
    token = parse_qs(urlsplit(body["websocket_url"]).query)["token"][0]
    return body["id"], token


async def _get(world: World, team: Team, call_id: str) -> dict[str, Any]:
    r = await world.client.get(f"/v1/calls/{call_id}", headers=team.auth())
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def _until(what: str, check: Any, timeout: float) -> float:
    started = time.monotonic()
    while not await check():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.1)
    return time.monotonic() - started


async def _hold_live_calls(node: Node, world: World, team: Team, agent_id: str) -> list[tuple[str, RTClient]]:
    """Join calls on ``node`` over real WebSockets, one exchange each, and keep them open."""
    held = []
    for _ in range(CALLS_PER_ROUND):
        call_id, token = await _call(world, team, agent_id)
        client = RTClient(f"ws://127.0.0.1:{node.port}/v1/calls/{call_id}/ws?token={token}", mode="text")
        await client.__aenter__()
        await client.send("send-text", {"content": "I would like to book an appointment"})

        async def exchanged(call_id: str = call_id) -> bool:
            turns = (await _get(world, team, call_id))["transcript"]
            return any(t["role"] == "user" for t in turns) and turns[-1]["role"] == "agent"

        await _until("an exchange to be recorded", exchanged, timeout=30)
        held.append((call_id, client))
    return held


async def test_kill_9_rounds_leave_no_dangling_call_and_lose_no_turn_or_webhook(
    world_with: WorldFactory, receiver: Receiver, database_url: str, tmp_path: Path
) -> None:
    async with world_with(
        webhooks_dispatch=False, webhooks_allow_private=True, sweep_interval_s=3600
    ) as world:
        team = await world.team("acme")
        agent_id = await _flow_agent(world, team)
        r = await world.client.post(
            "/v1/webhook-endpoints",
            json={"url": receiver.url, "events": ["call.failed"]},
            headers=team.auth(),
        )
        assert r.status_code == 201, r.text
        receiver.secrets = {"endpoint": r.json()["secret"]}

        lost: dict[str, list[dict[str, Any]]] = {}
        recovery_s: list[float] = []
        for round_ in range(ROUNDS):
            node = Node(database_url, tmp_path / f"node-{round_}", **NODE)
            await asyncio.to_thread(node.start)
            held = await _hold_live_calls(node, world, team, agent_id)
            for call_id, _ in held:
                assert (await _get(world, team, call_id))["status"] == "in_progress"
                lost[call_id] = (await _get(world, team, call_id))["transcript"]
            node.kill()
            for _, client in held:  # the socket died with the node
                await client.__aexit__(None, None, None)
            restarted = Node(database_url, tmp_path / f"node-{round_}-restarted", **NODE)
            started = time.monotonic()
            await asyncio.to_thread(restarted.start)
            try:

                async def all_ended(ids: list[str] = [c for c, _ in held]) -> bool:  # noqa: B006
                    return all([(await _get(world, team, c))["status"] == "failed" for c in ids])

                await _until("the dead node's calls to end", all_ended, timeout=30)
                recovery_s.append(time.monotonic() - started)
            finally:
                await asyncio.to_thread(restarted.stop)

        # Every call of a dead node ended node_lost, kept every turn it had recorded, and left the
        # team's live-call count at zero.
        for call_id, turns in lost.items():
            call = await _get(world, team, call_id)
            assert (call["status"], call["end_reason"]) == ("failed", "node_lost")
            assert [(t["role"], t["text"]) for t in call["transcript"]] == [
                (t["role"], t["text"]) for t in turns
            ]
        r = await world.client.get("/v1/calls?status=in_progress", headers=team.auth())
        assert r.json()["data"] == []

        # One call.failed event per lost call, delivered: none lost, none doubled (a last node drains the
        # outbox). A node killed between the receiver's 2xx and recording it sends that delivery again,
        # with the same webhook-id (at-least-once: receivers dedupe on it); such redeliveries are counted.
        async with Node(database_url, tmp_path / "node-last", **NODE):
            await receiver.wait_for(len(lost), timeout=60)
            await asyncio.sleep(1)  # a duplicate would arrive now
        acked = receiver.acked()
        events = {h.id: h.payload["data"]["id"] for h in acked}
        per_call = Counter(events.values())
        assert set(per_call) == set(lost), per_call
        assert all(n == 1 for n in per_call.values()), per_call  # one event (webhook-id) per call
        assert all(h.verified_by == ["endpoint"] for h in acked)
        assert max(recovery_s) < 30, recovery_s
        redelivered = len(acked) - len(events)
        print(
            f"kill -9 rounds: {ROUNDS}, calls ended node_lost: {len(lost)}, call.failed events: "
            f"{len(events)}, deliveries acked: {len(acked)} (redeliveries of one webhook-id: {redelivered}), "
            f"recovery s: {[round(s, 1) for s in recovery_s]}"
        )
