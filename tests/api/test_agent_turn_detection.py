"""An agent's ``turn_detection``: stored as given, validated, and applied to its calls' pipelines."""

from __future__ import annotations

import pytest

from tests.api.helpers import field_names
from tests.support.world import World

PROMPT_AGENT = {"name": "support", "prompt": "Be brief."}


async def test_turn_detection_is_stored_returned_and_patched(world: World) -> None:
    team = await world.team("acme")
    r = await world.client.post("/v1/agents", json=PROMPT_AGENT, headers=team.auth())
    assert r.status_code == 201, r.text
    assert r.json()["turn_detection"] == {}  # every field takes the server's default
    agent_id = r.json()["id"]

    settings = {
        "end_of_turn_silence_ms": 800, "early_end_silence_ms": 300, "allow_interruptions": False,
        "continue_window_ms": 0, "finished_sentence_silence_ms": 500,
    }  # fmt: skip
    r = await world.client.patch(
        f"/v1/agents/{agent_id}", json={"turn_detection": settings}, headers=team.auth()
    )
    assert r.status_code == 200, r.text
    assert r.json()["turn_detection"] == settings
    r = await world.client.get(f"/v1/agents/{agent_id}", headers=team.auth())
    assert r.json()["turn_detection"] == settings

    r = await world.client.post(
        "/v1/agents",
        json={**PROMPT_AGENT, "turn_detection": {"vad_threshold": 0.6, "min_speech_ms": 150}},
        headers=team.auth(),
    )
    assert r.status_code == 201, r.text
    assert r.json()["turn_detection"] == {"vad_threshold": 0.6, "min_speech_ms": 150}


@pytest.mark.parametrize(
    ("turn_detection", "field"),
    [
        ({"end_of_turn_silence_ms": 50}, "body.turn_detection.end_of_turn_silence_ms"),
        ({"vad_threshold": 0}, "body.turn_detection.vad_threshold"),
        ({"continue_window_ms": 5000}, "body.turn_detection.continue_window_ms"),
        ({"continue_window_ms": "500"}, "body.turn_detection.continue_window_ms"),
        ({"finished_sentence_silence_ms": -1}, "body.turn_detection.finished_sentence_silence_ms"),
        ({"finished_sentence_silence_ms": 450.5}, "body.turn_detection.finished_sentence_silence_ms"),
        ({"allow_interruptions": "sometimes"}, "body.turn_detection.allow_interruptions"),
        ({"endpointing": 300}, "body.turn_detection.endpointing"),
        ({"end_of_turn_silence_ms": 300, "early_end_silence_ms": 400}, "body.turn_detection"),
        ([], "body.turn_detection"),
    ],
)
async def test_bad_turn_detection_is_refused(world: World, turn_detection: object, field: str) -> None:
    team = await world.team("acme")
    r = await world.client.post(
        "/v1/agents", json={**PROMPT_AGENT, "turn_detection": turn_detection}, headers=team.auth()
    )
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert field in field_names(r.json()), r.json()
    r = await world.client.get("/v1/agents", headers=team.auth())
    assert all(a["name"] != "support" for a in r.json()["data"])  # nothing half-written


async def test_null_turn_detection_is_refused_on_patch(world: World) -> None:
    team = await world.team("acme")
    r = await world.client.patch(
        f"/v1/agents/{team.agent_id}", json={"turn_detection": None}, headers=team.auth()
    )
    assert r.status_code == 422, r.text


async def test_reminders_are_stored_and_bad_ones_refused(world: World) -> None:
    team = await world.team("acme")
    reminders = {"reminder_after_s": 7.5, "reminder_max_count": 2, "reminders": ["Hello?", "Still there?"]}
    r = await world.client.post(
        "/v1/agents", json={**PROMPT_AGENT, "turn_detection": reminders}, headers=team.auth()
    )
    assert r.status_code == 201, r.text
    assert r.json()["turn_detection"] == reminders
    for bad, field in [
        ({"reminder_after_s": -1}, "reminder_after_s"),
        ({"reminder_after_s": 601}, "reminder_after_s"),
        ({"reminder_max_count": 11}, "reminder_max_count"),
        ({"reminder_max_count": 1.5}, "reminder_max_count"),
        ({"reminders": "Hello?"}, "reminders"),
        ({"reminders": [""]}, "reminders.0"),
        ({"reminders": ["x" * 501]}, "reminders.0"),
        ({"reminders": ["Hello?"] * 11}, "reminders"),
    ]:
        r = await world.client.post(
            "/v1/agents", json={**PROMPT_AGENT, "name": "bad", "turn_detection": bad}, headers=team.auth()
        )
        assert r.status_code == 422, (bad, r.text)
        assert f"body.turn_detection.{field}" in field_names(r.json()), (bad, r.json())
