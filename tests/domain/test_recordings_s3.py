"""Recordings kept in an S3-compatible bucket (a local moto server): kept, served from any node with
ranges and tenancy, deleted; and what happens when the bucket cannot be reached."""

from __future__ import annotations

from pathlib import Path

import pytest

from callgate.domain import calls
from tests.api.helpers import assert_problem
from tests.support.recordings import new_call, stereo_wav
from tests.support.s3 import S3Server, unreachable_s3_settings
from tests.support.world import World, WorldFactory


@pytest.fixture
def bucket(s3_server: S3Server) -> str:
    return s3_server.new_bucket()


@pytest.fixture
def settings_overrides(s3_server: S3Server, bucket: str) -> dict[str, object]:
    return s3_server.settings(bucket)


async def test_a_kept_recording_is_uploaded_and_served_by_another_node(
    world: World, world_with: WorldFactory, s3_server: S3Server, bucket: str, tmp_path: Path
) -> None:
    team = await world.team("acme")
    call_id = await new_call(world, team)
    local = world.runtime.recordings.spool_path(call_id)
    wav = stereo_wav(local)

    location = await world.runtime.recordings.keep(team_id=team.id, call_id=call_id, local=local)

    assert location == f"s3://{bucket}/calls/{call_id}.wav"
    assert s3_server.object_bytes(bucket, f"calls/{call_id}.wav") == wav
    assert not local.exists()  # the node's copy is gone once the bucket has it
    call = (await world.client.get(f"/v1/calls/{call_id}", headers=team.auth())).json()
    assert call["recording_url"].endswith(f"/v1/calls/{call_id}/recording")
    async with world_with(data_dir=tmp_path / "other-node") as other:
        r = await other.client.get(f"/v1/calls/{call_id}/recording", headers=team.auth())
    assert r.status_code == 200 and r.headers["content-type"] == "audio/wav"
    assert r.content == wav and r.headers["content-length"] == str(len(wav))
    assert r.headers["accept-ranges"] == "bytes"


async def test_ranges_are_served_from_the_bucket(world: World, tmp_path: Path) -> None:
    team = await world.team("acme")
    call_id = await new_call(world, team)
    local = world.runtime.recordings.spool_path(call_id)
    wav = stereo_wav(local)
    await world.runtime.recordings.keep(team_id=team.id, call_id=call_id, local=local)
    url = f"/v1/calls/{call_id}/recording"

    r = await world.client.get(url, headers={**team.auth(), "Range": "bytes=0-43"})
    assert r.status_code == 206 and r.content == wav[:44] and r.content.startswith(b"RIFF")
    assert r.headers["content-range"] == f"bytes 0-43/{len(wav)}"
    r = await world.client.get(url, headers={**team.auth(), "Range": "bytes=1000-"})
    assert r.status_code == 206 and r.content == wav[1000:]
    r = await world.client.get(url, headers={**team.auth(), "Range": "bytes=-100"})
    assert r.status_code == 206 and r.content == wav[-100:]
    # Past the end, or not a range we serve: the whole recording, as a 200.
    for header in (f"bytes={len(wav) + 10}-", "bytes=0-1,5-9", "pages=1"):
        r = await world.client.get(url, headers={**team.auth(), "Range": header})
        assert r.status_code == 200 and r.content == wav, header


async def test_another_teams_recording_is_not_found(world: World) -> None:
    team, other = await world.team("acme"), await world.team("globex")
    call_id = await new_call(world, team)
    local = world.runtime.recordings.spool_path(call_id)
    stereo_wav(local)
    await world.runtime.recordings.keep(team_id=team.id, call_id=call_id, local=local)

    r = await world.client.get(f"/v1/calls/{call_id}/recording", headers=other.auth())
    assert_problem(r, 404, "not_found")
    r = await world.client.get("/v1/calls/call_nope/recording", headers=team.auth())
    assert_problem(r, 404, "not_found")
    # The call's own team, once more: still there.
    r = await world.client.get(f"/v1/calls/{call_id}/recording", headers=team.auth())
    assert r.status_code == 200


async def test_a_call_without_a_recording_is_not_found(world: World) -> None:
    team = await world.team("acme")
    call_id = await new_call(world, team)
    r = await world.client.get(f"/v1/calls/{call_id}/recording", headers=team.auth())
    assert assert_problem(r, 404, "not_found")["detail"] == "this call has no recording"


async def test_deleting_a_recording_removes_the_object(
    world: World, s3_server: S3Server, bucket: str
) -> None:
    team = await world.team("acme")
    call_id = await new_call(world, team)
    local = world.runtime.recordings.spool_path(call_id)
    stereo_wav(local)
    location = await world.runtime.recordings.keep(team_id=team.id, call_id=call_id, local=local)
    assert location is not None and s3_server.keys(bucket) == [f"calls/{call_id}.wav"]

    await world.runtime.recordings.delete(location)
    assert s3_server.keys(bucket) == []
    r = await world.client.get(f"/v1/calls/{call_id}/recording", headers=team.auth())
    assert_problem(r, 404, "not_found")
    await world.runtime.recordings.delete(location)  # deleting twice is fine


async def test_an_unreachable_bucket_keeps_the_local_file(world_with: WorldFactory, tmp_path: Path) -> None:
    async with world_with(**unreachable_s3_settings()) as world:
        team = await world.team("acme")
        call_id = await new_call(world, team)
        local = world.runtime.recordings.spool_path(call_id)
        wav = stereo_wav(local)

        location = await world.runtime.recordings.keep(team_id=team.id, call_id=call_id, local=local)

        assert location is None
        assert local.read_bytes() == wav  # nothing lost: an operator can upload it
        call = (await world.client.get(f"/v1/calls/{call_id}", headers=team.auth())).json()
        assert call["recording_url"] is None  # no URL that only this node could answer
        r = await world.client.get(f"/v1/calls/{call_id}/recording", headers=team.auth())
        assert_problem(r, 404, "not_found")


async def test_reading_from_an_unreachable_bucket_is_a_503(world_with: WorldFactory) -> None:
    async with world_with(**unreachable_s3_settings()) as world:
        team = await world.team("acme")
        call_id = await new_call(world, team)
        now = world.runtime.clock.now()
        await world.runtime.db.write(
            lambda s: calls.attach_recording(
                s, team_id=team.id, call_id=call_id, location=f"s3://recordings/calls/{call_id}.wav", now=now
            )
        )
        r = await world.client.get(f"/v1/calls/{call_id}/recording", headers=team.auth())
        assert_problem(r, 503, "storage_unavailable")
