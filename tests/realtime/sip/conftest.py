"""SIP-over-WebSocket tests: a real server, a web call created with transport=sip, a Python UAC."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from tests.conftest import Team
from tests.realtime.conftest import LiveServer
from tests.realtime.sip.sip_client import Creds
from tests.realtime.webrtc_client import loopback_ice


@pytest.fixture(autouse=True)
def _loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    loopback_ice(monkeypatch)


@dataclass
class SipCall:
    body: dict[str, Any]
    team: Team
    agent_id: str

    @property
    def id(self) -> str:
        return str(self.body["id"])

    @property
    def sip(self) -> dict[str, Any]:
        sip: dict[str, Any] = self.body["sip"]
        return sip

    @property
    def creds(self) -> Creds:
        return Creds(self.sip["sip_username"], self.sip["sip_password"], self.sip["sip_domain"])

    @property
    def ws_url(self) -> str:
        return str(self.sip["ws_url"])

    @property
    def target(self) -> str:
        return str(self.sip["target"])

    @property
    def headers(self) -> dict[str, str]:
        headers: dict[str, str] = self.sip["headers"]
        return headers


async def new_sip_call(live: LiveServer, *, team: Team | None = None, **agent: object) -> SipCall:
    team = team or await live.world.team("acme")
    agent_id = await live.flow_agent(team, **agent)
    body = await live.web_call(team, agent_id, transport="sip")
    return SipCall(body, team, agent_id)


async def call_status(live: LiveServer, call: SipCall) -> dict[str, Any]:
    r = await live.world.client.get(f"/v1/calls/{call.id}", headers=call.team.auth())
    body: dict[str, Any] = r.json()
    return body


@pytest.fixture
async def sip_call(live: LiveServer) -> SipCall:
    return await new_sip_call(live)
