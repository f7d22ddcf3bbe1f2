"""Webhook fixtures: the app on fast retry settings with loopback receivers allowed, a real receiver,
and helpers that drive a call through its life with the domain functions the sessions use."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from callgate.clock import utcnow
from callgate.domain import calls
from callgate.domain.lifecycle import CallStatus, EndReason
from tests.support.world import Team, World

FAST: dict[str, object] = {
    "webhooks_allow_private": True,
    "webhooks_backoff_base_s": 0.05,
    "webhooks_backoff_max_s": 0.4,
    "webhooks_poll_interval_s": 0.02,
    "webhooks_timeout_s": 1.0,
    "webhooks_max_attempts": 4,
    "webhooks_lease_s": 3.0,
}


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    return dict(FAST)


async def add_endpoint(world: World, team: Team, url: str, **fields: Any) -> dict[str, Any]:
    r = await world.client.post("/v1/webhook-endpoints", json={"url": url, **fields}, headers=team.auth())
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


async def new_call(world: World, team: Team, agent_id: str | None = None, **fields: Any) -> str:
    body = {"agent_id": agent_id or team.agent_id, **fields}
    r = await world.client.post("/v1/web-calls", json=body, headers=team.auth())
    assert r.status_code == 201, r.text
    call_id: str = r.json()["id"]
    return call_id


async def run_call(
    world: World,
    team: Team,
    call_id: str,
    *,
    turns: tuple[tuple[str, str] | tuple[str, str, dict[str, Any]], ...] = (
        ("agent", "Hello, how can I help?"),
        ("user", "Just testing."),
    ),
    reason: EndReason = EndReason.CALLER_HANGUP,
    data: dict[str, Any] | None = None,
    recording: str | None = None,
) -> None:
    """join → in_progress → turns (role, text and optionally more of the turn's fields) → the session's
    finish, as a live session does it."""
    db, now = world.runtime.db, utcnow()
    await db.write(lambda s: calls.join_call(s, team_id=team.id, call_id=call_id, now=now))

    async def start(s: Any) -> None:
        call = await calls.get_call(s, team_id=team.id, call_id=call_id, for_update=True)
        await calls.transition(s, call=call, to=CallStatus.IN_PROGRESS, now=now)

    await db.write(start)
    for i, (role, text, *more) in enumerate(turns):
        at = now + timedelta(seconds=i)
        fields = {
            "role": role,
            "text": text,
            "interrupted": False,
            "started_at": at,
            "ended_at": at + timedelta(milliseconds=500),
            "total_ms": 400 if role == "agent" else None,
            **(more[0] if more else {}),
        }
        await db.write(lambda s, f=fields: calls.add_turn(s, call_id=call_id, fields=f))  # type: ignore[misc]
    end = utcnow()
    await db.write(
        lambda s: calls.finish_call(
            s, team_id=team.id, call_id=call_id, reason=reason, now=end, data=data, recording_path=recording
        )
    )
