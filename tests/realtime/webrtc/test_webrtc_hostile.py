"""Hostile messages on a live WebRTC call's ``rtvi`` data channel: close 4400, the call ends at once."""

from __future__ import annotations

import asyncio

import pytest

from tests.realtime.test_rtvi import DEEP
from tests.support.live import LiveServer, ended_within
from tests.support.webrtc_client import RTCClient, loopback_ice


@pytest.fixture(autouse=True)
def _loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    loopback_ice(monkeypatch)


async def test_deeply_nested_json_on_the_data_channel_ends_the_call(live: LiveServer) -> None:
    team = await live.world.team("acme")
    agent_id = await live.flow_agent(team)
    call = await live.web_call(team, agent_id, transport="webrtc", mode="text")
    async with RTCClient(str(call["webrtc_offer_url"]), str(call["token"]), mode="text") as client:
        client.channel.send(DEEP)
        async with asyncio.timeout(10):
            while not (
                closed := [
                    m for m in client.messages("server-message") if m["data"]["type"] == "connection-closed"
                ]
            ):
                await asyncio.sleep(0.05)
        assert closed[0]["data"] == {
            "type": "connection-closed",
            "code": 4400,
            "reason": "message nested deeper than 32 levels",
        }
        body = await ended_within(live, team.auth(), str(call["id"]), 2.0)
    assert (body["status"], body["end_reason"]) == ("ended", "transport_lost")
