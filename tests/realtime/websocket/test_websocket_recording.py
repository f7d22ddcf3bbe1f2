"""A real voice call's recording kept in an S3-compatible bucket (a local moto server): recorded on
one node, fetched through another on the same PostgreSQL database; and a call whose bucket is down."""

from __future__ import annotations

import time
import wave
from contextlib import asynccontextmanager
from pathlib import Path

import numpy as np
import pytest

from callgate.config import Settings
from tests.support.live import LiveServer, serve, wait_settled
from tests.support.rtvi_client import RTClient, nonsilent_seconds
from tests.support.s3 import S3Server, unreachable_s3_settings
from tests.support.speech import BOOKING, speech_pcm
from tests.support.world import Team, WorldFactory, make_settings

# Several nodes share PostgreSQL in production; one database is enough for what these tests show.
pytestmark = [pytest.mark.speech, pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)]


@pytest.fixture
def bucket(s3_server: S3Server) -> str:
    return s3_server.new_bucket()


@pytest.fixture
def settings_overrides(s3_server: S3Server, bucket: str) -> dict[str, object]:
    return s3_server.settings(bucket)


@pytest.fixture
def live_settings(settings: Settings) -> Settings:
    """The live node runs on the test's database (so that ``world_with`` nodes share it)."""
    return settings


async def talk_and_hang_up(live: LiveServer, team: Team, tmp_path: Path) -> str:
    """A voice call: the greeting, the caller says something, the caller hangs up. Its id."""
    agent_id = await live.flow_agent(team)
    call = await live.web_call(team, agent_id)
    async with RTClient(str(call["websocket_url"])) as client:
        await client.wait_for("bot-stopped-speaking", timeout=30)  # the greeting played out
        spoke_at = time.monotonic()
        await client.stream(speech_pcm(BOOKING, tmp_path))
        await client.silence(0.5)
        await client.send("disconnect-bot")
        ended = await client.wait_for("server-message", since=spoke_at, timeout=30)
        assert ended["data"] == {"type": "call-ended", "reason": "caller_hangup"}
    return str(call["id"])


def channels(wav: bytes, tmp_path: Path) -> tuple[np.ndarray, np.ndarray]:
    path = tmp_path / "fetched.wav"
    path.write_bytes(wav)
    with wave.open(str(path)) as w:
        assert w.getnchannels() == 2 and w.getframerate() == 16000
        stereo = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).reshape(-1, 2)
    return np.ascontiguousarray(stereo[:, 0]), np.ascontiguousarray(stereo[:, 1])


async def test_a_call_recorded_on_one_node_plays_from_another(
    live: LiveServer, world_with: WorldFactory, s3_server: S3Server, bucket: str, tmp_path: Path
) -> None:
    team = await live.world.team("acme")
    call_id = await talk_and_hang_up(live, team, tmp_path)

    body = await wait_settled(live, team.auth(), call_id)
    assert body["end_reason"] == "caller_hangup"
    assert str(body["recording_url"]).endswith(f"/v1/calls/{call_id}/recording")
    stored = s3_server.object_bytes(bucket, f"calls/{call_id}.wav")
    assert not live.runtime.recordings.spool_path(call_id).exists()  # uploaded, then removed here

    async with world_with(data_dir=tmp_path / "node-2") as other:
        r = await other.client.get(f"/v1/calls/{call_id}/recording", headers=team.auth())
        assert r.status_code == 200 and r.headers["content-type"] == "audio/wav"
        assert r.content == stored
        caller, agent = channels(r.content, tmp_path)
        assert nonsilent_seconds(caller, 16000) >= 1.0 and nonsilent_seconds(agent, 16000) >= 1.0
        part = await other.client.get(
            f"/v1/calls/{call_id}/recording", headers={**team.auth(), "Range": "bytes=0-1023"}
        )
        assert part.status_code == 206 and part.content == stored[:1024]
        stranger = await other.team("globex")
        r = await other.client.get(f"/v1/calls/{call_id}/recording", headers=stranger.auth())
        assert r.status_code == 404


async def test_a_call_whose_bucket_is_down_ends_cleanly_and_keeps_its_recording(
    database_url: str, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path, database_url, **unreachable_s3_settings())
    async with asynccontextmanager(serve)(settings) as live:
        team = await live.world.team("acme")
        call_id = await talk_and_hang_up(live, team, tmp_path)

        body = await wait_settled(live, team.auth(), call_id)
        assert body["status"] == "ended" and body["end_reason"] == "caller_hangup"
        assert body["recording_url"] is None
        kept = live.runtime.recordings.spool_path(call_id)
        caller, agent = channels(kept.read_bytes(), tmp_path)
        assert nonsilent_seconds(caller, 16000) >= 1.0 and nonsilent_seconds(agent, 16000) >= 1.0
        r = await live.world.client.get(f"/v1/calls/{call_id}/recording", headers=team.auth())
        assert r.status_code == 404
