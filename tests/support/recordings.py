"""Helpers for the recording tests: a call to attach recordings to, and WAV files to record."""

from __future__ import annotations

import os
import wave
from pathlib import Path

from tests.support.world import Team, World


async def new_call(world: World, team: Team) -> str:
    """A web call of ``team`` (created, never joined): something to attach a recording to."""
    r = await world.client.post("/v1/web-calls", json={"agent_id": team.agent_id}, headers=team.auth())
    assert r.status_code == 201, r.text
    call_id: str = r.json()["id"]
    return call_id


def stereo_wav(path: Path, *, seconds: float = 1.0) -> bytes:
    """A 16 kHz 16-bit stereo WAV of noise at ``path``, as a session writes; returns its bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(os.urandom(int(16000 * seconds) * 4))
    return path.read_bytes()
