"""SIP trunk test helpers: a carrier and a number on a live server, the trunk's address, call lookups."""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass
from typing import Any

from tests.support.live import LiveServer
from tests.support.world import Team

NUMBER = "+14155550123"


@dataclass
class TrunkNumber:
    team: Team
    agent_id: str
    carrier_id: str
    number: str


def trunk_address(live: LiveServer) -> tuple[str, int]:
    trunk = live.runtime.sip_trunk
    assert trunk is not None and trunk.server.address is not None, "CALLGATE_SIP_LISTEN is not set"
    return trunk.server.address


async def trunk_number(
    live: LiveServer,
    *,
    team: Team | None = None,
    number: str = NUMBER,
    inbound: dict[str, Any] | None = None,
    outbound: dict[str, Any] | None = None,
    agent_id: str | None = None,
) -> TrunkNumber:
    """A sip carrier (inbound from loopback unless told) and ``number`` on it, answered by a flow agent."""
    team = team or await live.world.team("acme")
    agent_id = agent_id or await live.flow_agent(team)
    body: dict[str, Any] = {"kind": "sip", "name": "carrier"}
    body["inbound"] = inbound if inbound is not None else {"allowed_addresses": ["127.0.0.1/32"]}
    if outbound is not None:
        body["outbound"] = outbound
    r = await live.world.client.post("/v1/carriers", json=body, headers=team.auth())
    assert r.status_code == 201, r.text
    carrier_id = r.json()["id"]
    r = await live.world.client.post(
        "/v1/phone-numbers",
        json={"number": number, "agent_id": agent_id, "carrier_id": carrier_id},
        headers=team.auth(),
    )
    assert r.status_code == 201, r.text
    return TrunkNumber(team, agent_id, carrier_id, number)


async def get_call(live: LiveServer, team: Team, call_id: str) -> dict[str, Any]:
    r = await live.world.client.get(f"/v1/calls/{call_id}", headers=team.auth())
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def only_call(live: LiveServer, team: Team, *, timeout: float = 30) -> dict[str, Any]:
    """The team's one call, once it exists."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = await live.world.client.get("/v1/calls", headers=team.auth())
        items = r.json()["data"]
        if items:
            assert len(items) == 1, items
            return await get_call(live, team, items[0]["id"])
        await asyncio.sleep(0.1)
    raise AssertionError("no call was created")


async def wait_turn(
    live: LiveServer, team: Team, call_id: str, pattern: str, *, role: str | None = None, timeout: float = 60
) -> dict[str, Any]:
    """The first transcript turn matching ``pattern`` (and ``role``)."""
    deadline = time.monotonic() + timeout
    turns: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        turns = (await get_call(live, team, call_id))["transcript"]
        for turn in turns:
            if re.search(pattern, turn["text"], re.IGNORECASE) and role in (None, turn["role"]):
                return turn
        await asyncio.sleep(0.2)
    raise AssertionError(f"no turn matching {pattern!r}: {turns}")


async def wait_ended(live: LiveServer, team: Team, call_id: str, *, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        body = await get_call(live, team, call_id)
        if body["status"] in ("ended", "failed"):
            return body
        await asyncio.sleep(0.1)
    raise AssertionError(f"the call did not end: {body.get('status')}")
