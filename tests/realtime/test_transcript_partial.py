"""``transcript.partial``: interim transcripts of a live voice call, delivered only where they are wanted."""

from __future__ import annotations

import asyncio
import itertools
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from callgate.config import Settings
from callgate.store.models_webhooks import WebhookEvent
from tests.support.live import LiveServer, wait_settled
from tests.support.receiver import Receiver
from tests.support.rtvi_client import RTClient
from tests.support.speech import speech_pcm
from tests.support.world import Team, make_settings

pytestmark = pytest.mark.speech

SPEECH = "I would like to book an appointment for tomorrow at three pm."


@pytest.fixture
def live_settings(tmp_path: Path, sqlite_template: Path) -> Settings:
    path = tmp_path / "callgate.db"
    path.write_bytes(sqlite_template.read_bytes())
    return make_settings(
        tmp_path, f"sqlite+aiosqlite:///{path}", public_url=None, webhooks_allow_private=True
    )


async def _talk(live: LiveServer, call: dict[str, object], tmp_path: Path) -> None:
    speech = speech_pcm(SPEECH, tmp_path)
    async with RTClient(str(call["websocket_url"])) as client:
        await client.wait_for("bot-stopped-speaking", timeout=30)
        spoke_at = time.monotonic()
        await client.stream(speech)
        await client.silence(1.0)
        await client.wait_for("user-transcription", since=spoke_at, timeout=20)
        await client.send("disconnect-bot")
        await client.wait_for("server-message", since=spoke_at)


async def _partial_events(live: LiveServer, call_id: str) -> int:
    async with live.runtime.db.read() as s:
        stmt = select(func.count()).where(
            WebhookEvent.call_id == call_id, WebhookEvent.type == "transcript.partial"
        )
        return int((await s.execute(stmt)).scalar_one())


async def _call_with_endpoint(
    live: LiveServer, hooks: Receiver, *, events: list[str] | None
) -> tuple[Team, dict[str, object]]:
    """A team whose endpoint (``events``; None: the defaults) is the receiver, and a call of a flow
    agent on the streaming STT."""
    team = await live.world.team("acme")
    agent_id = await live.flow_agent(team, stt={"engine": "pocketsphinx"})
    body = {"url": hooks.url, **({"events": events} if events is not None else {})}
    r = await live.world.client.post("/v1/webhook-endpoints", json=body, headers=team.auth())
    assert r.status_code == 201, r.text
    hooks.secrets = {"endpoint": r.json()["secret"]}
    return team, await live.web_call(team, agent_id)


async def test_subscribed_endpoint_gets_signed_partials_before_the_final_turn(
    live: LiveServer,
    receiver: Receiver,
    tmp_path: Path,
) -> None:
    team, call = await _call_with_endpoint(live, receiver, events=["transcript.partial", "transcript.final"])
    call_id = str(call["id"])
    await _talk(live, call, tmp_path)
    await wait_settled(live, team.auth(), call_id)

    def user_final_seen() -> bool:
        return any(
            h.payload["type"] == "transcript.final" and h.payload["data"]["role"] == "user"
            for h in receiver.all()
        )

    for _ in range(200):
        if user_final_seen():
            break
        await asyncio.sleep(0.05)
    hits = receiver.all()
    assert all(h.verified_by == ["endpoint"] for h in hits)
    types = [h.payload["type"] for h in hits]
    partials = [h.payload["data"] for h in hits if h.payload["type"] == "transcript.partial"]
    assert partials, types
    assert all(p["call_id"] == call_id and p["role"] == "user" and p["final"] is False for p in partials)
    assert all(p["text"].strip() for p in partials)
    texts = [p["text"] for p in partials]
    assert all(a != b for a, b in itertools.pairwise(texts))  # a repeat is not sent again
    first_user_final = next(
        i
        for i, h in enumerate(hits)
        if h.payload["type"] == "transcript.final" and h.payload["data"]["role"] == "user"
    )
    assert types.index("transcript.partial") < first_user_final
    assert await _partial_events(live, call_id) == len(partials)


async def test_partials_are_not_recorded_when_nobody_opted_in(
    live: LiveServer,
    receiver: Receiver,
    tmp_path: Path,
) -> None:
    team, call = await _call_with_endpoint(live, receiver, events=None)  # defaults: partials are opt-in
    call_id = str(call["id"])
    await _talk(live, call, tmp_path)
    body = await wait_settled(live, team.auth(), call_id)
    assert any(t["role"] == "user" for t in body["transcript"])  # type: ignore[union-attr]
    for _ in range(200):
        if any(h.payload["type"] == "call.ended" for h in receiver.all()):
            break
        await asyncio.sleep(0.05)
    types = {h.payload["type"] for h in receiver.all()}
    assert "call.ended" in types and "transcript.final" in types
    assert "transcript.partial" not in types
    assert await _partial_events(live, call_id) == 0
