"""Recordings on the node's disk (the default) and the byte ranges recordings are served in."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from callgate.domain.recording_store import ByteRange
from tests.api.helpers import assert_problem
from tests.support.recordings import new_call, stereo_wav
from tests.support.world import World, WorldFactory, make_settings


@pytest.mark.parametrize(
    ("header", "size", "span"),
    [
        ("bytes=0-99", 1000, (0, 99)),
        ("bytes=900-", 1000, (900, 999)),
        ("bytes=900-5000", 1000, (900, 999)),
        ("bytes=-100", 1000, (900, 999)),
        ("bytes=-5000", 1000, (0, 999)),
        ("bytes=1000-", 1000, None),
    ],
)
def test_a_range_resolves_within_the_size(header: str, size: int, span: tuple[int, int] | None) -> None:
    byte_range = ByteRange.parse(header)
    assert byte_range is not None and byte_range.resolve(size) == span


@pytest.mark.parametrize(
    "header",
    [None, "", "bytes=", "bytes=-", "bytes=5-1", "bytes=-0", "bytes=0-1,4-5", "items=0-1", "bytes=a-b"],
)
def test_other_range_headers_mean_the_whole_file(header: str | None) -> None:
    assert ByteRange.parse(header) is None


async def test_the_default_keeps_recordings_on_this_nodes_disk(world: World) -> None:
    team = await world.team("acme")
    call_id = await new_call(world, team)
    local = world.runtime.recordings.spool_path(call_id)
    wav = stereo_wav(local)

    location = await world.runtime.recordings.keep(team_id=team.id, call_id=call_id, local=local)

    assert location == str(local) and local.read_bytes() == wav
    url = f"/v1/calls/{call_id}/recording"
    r = await world.client.get(url, headers=team.auth())
    assert r.status_code == 200 and r.content == wav and r.headers["content-type"] == "audio/wav"
    r = await world.client.get(url, headers={**team.auth(), "Range": "bytes=4-7"})
    assert r.status_code == 206 and r.content == wav[4:8]
    assert r.headers["content-range"] == f"bytes 4-7/{len(wav)}"
    other = await world.team("globex")
    assert_problem(await world.client.get(url, headers=other.auth()), 404, "not_found")

    await world.runtime.recordings.delete(location)
    assert not local.exists()
    assert_problem(await world.client.get(url, headers=team.auth()), 404, "not_found")


async def test_a_file_url_chooses_the_directory(world_with: WorldFactory, tmp_path: Path) -> None:
    shared = tmp_path / "shared-volume"
    async with world_with(recordings_url=f"file://{shared}") as world:
        team = await world.team("acme")
        call_id = await new_call(world, team)
        local = world.runtime.recordings.spool_path(call_id)
        assert local == shared / f"{call_id}.wav"
        wav = stereo_wav(local)
        kept = await world.runtime.recordings.keep(team_id=team.id, call_id=call_id, local=local)
        assert kept == str(local)
    async with world_with(recordings_url=f"file://{shared}", data_dir=tmp_path / "node-2") as other:
        r = await other.client.get(f"/v1/calls/{call_id}/recording", headers=team.auth())
        assert r.status_code == 200 and r.content == wav


@pytest.mark.parametrize("url", ["ftp://host/x", "s3://", "file://relative/dir", "bucket/prefix"])
def test_recordings_url_must_be_s3_or_an_absolute_file_url(url: str, tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="CALLGATE_RECORDINGS_URL"):
        make_settings(tmp_path, "sqlite+aiosqlite:///x.db", recordings_url=url)
