"""Twilio tests: a local fake Twilio (REST API, webhook signer, Media Streams client) the node is pointed
at with ``CALLGATE_TWILIO_API_BASE``, and a team with a Twilio carrier and a number answered by an agent."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from callgate.config import Settings
from tests.support.fake_twilio import FakeTwilio
from tests.support.world import Team, World, make_settings

NUMBER = "+14155550100"
CALLER = "+14155550199"


@pytest.fixture
async def fake_twilio() -> AsyncIterator[FakeTwilio]:
    async with FakeTwilio() as fake:
        yield fake


@pytest.fixture
def settings_overrides(fake_twilio: FakeTwilio) -> dict[str, object]:
    return {"twilio_api_base": fake_twilio.url}


@pytest.fixture
def live_settings(tmp_path: Path, sqlite_template: Path, fake_twilio: FakeTwilio) -> Settings:
    path = tmp_path / "callgate.db"
    path.write_bytes(sqlite_template.read_bytes())
    return make_settings(
        tmp_path, f"sqlite+aiosqlite:///{path}", public_url=None, twilio_api_base=fake_twilio.url
    )


@dataclass
class Line:
    """A team with a Twilio carrier and ``NUMBER`` on it, answered by ``agent_id``."""

    team: Team
    carrier_id: str
    agent_id: str
    number: str = NUMBER


async def twilio_line(world: World, fake: FakeTwilio, team: Team, agent_id: str) -> Line:
    auth = team.auth()
    r = await world.client.post(
        "/v1/carriers",
        json={
            "name": "twilio",
            "kind": "twilio",
            "account_sid": fake.account_sid,
            "auth_token": fake.auth_token,
        },
        headers=auth,
    )
    assert r.status_code == 201, r.text
    carrier_id = r.json()["id"]
    r = await world.client.post(
        "/v1/phone-numbers",
        json={"number": NUMBER, "agent_id": agent_id, "carrier_id": carrier_id},
        headers=auth,
    )
    assert r.status_code == 201, r.text
    return Line(team, carrier_id, agent_id)
