"""Voice calls over the WebSocket transport with the embedded speech stack, real audio both ways."""

from __future__ import annotations

import asyncio
import time
import wave
from pathlib import Path

import numpy as np
import pytest

from tests.support.live import LiveServer, wait_settled
from tests.support.rtvi_client import RTClient, nonsilent_seconds
from tests.support.speech import BOOKING, speech_pcm

pytestmark = pytest.mark.speech


async def test_voice_call_books_an_appointment(live: LiveServer, tmp_path: Path) -> None:
    team = await live.world.team("acme")
    agent_id = await live.flow_agent(team)
    call = await live.web_call(team, agent_id)
    speech = speech_pcm(BOOKING, tmp_path)
    async with RTClient(str(call["websocket_url"])) as client:
        await client.wait_for("bot-stopped-speaking", timeout=30)  # the greeting played out
        greeting = client.audio_since(0)
        assert nonsilent_seconds(greeting, 16000) >= 1.0
        spoke_at = time.monotonic()
        await client.stream(speech)
        await client.silence(1.0)
        transcript = await client.wait_for("user-transcription", since=spoke_at, timeout=20)
        assert "appointment" in transcript["data"]["text"].lower()
        await client.wait_for("bot-started-speaking", since=spoke_at, timeout=20)
        await client.wait_for("bot-stopped-speaking", since=spoke_at + 0.1, timeout=30)
        assert nonsilent_seconds(client.audio_since(spoke_at), 16000) >= 1.0
        metrics = await client.wait_for("metrics", since=spoke_at)
        assert metrics["data"]["turn"]["total_ms"] > 0
        await client.send("disconnect-bot")
        await client.wait_for("server-message", since=spoke_at)

    body = await wait_settled(live, team.auth(), str(call["id"]))
    assert body["end_reason"] == "caller_hangup"
    turns = body["transcript"]
    assert isinstance(turns, list)
    user = [t for t in turns if t["role"] == "user"]
    assert user and all(w in user[0]["text"].lower() for w in ("appointment", "tomorrow"))
    agent_after = [t for t in turns if t["role"] == "agent" and t["seq"] > user[0]["seq"]]
    assert agent_after and "tomorrow" in agent_after[0]["text"].lower()
    assert agent_after[0]["total_ms"] is not None and agent_after[0]["stt_ms"] is not None
    latency = body["latency"]
    assert isinstance(latency, dict) and latency["p50_ms"] is not None

    r = await live.world.client.get(f"/v1/calls/{call['id']}/recording", headers=team.auth())
    assert r.status_code == 200 and r.headers["content-type"] == "audio/wav"
    path = tmp_path / "rec.wav"
    path.write_bytes(r.content)
    with wave.open(str(path)) as w:
        assert w.getnchannels() == 2 and w.getframerate() == 16000
        stereo = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).reshape(-1, 2)
    assert nonsilent_seconds(np.ascontiguousarray(stereo[:, 0]), 16000) >= 1.0  # caller
    assert nonsilent_seconds(np.ascontiguousarray(stereo[:, 1]), 16000) >= 1.0  # agent


async def test_barge_in_stops_agent_audio_and_truncates_turn(live: LiveServer, tmp_path: Path) -> None:
    team = await live.world.team("acme")
    agent_id = await live.flow_agent(team)
    call = await live.web_call(team, agent_id)
    interruption = speech_pcm("Wait, wait. I need to talk to a person please.", tmp_path)
    async with RTClient(str(call["websocket_url"])) as client:
        started = await client.wait_for("bot-started-speaking", timeout=30)
        assert started
        await asyncio.sleep(1.0)  # let the greeting play for a second
        barge_at = time.monotonic()
        stream = asyncio.create_task(client.stream(interruption))
        interrupted = await client.wait_for("bot-interrupted", since=barge_at, timeout=10)
        assert interrupted
        await stream
        interrupted_at = next(t for t, m in client.got.messages if m["type"] == "bot-interrupted")
        # Frames already in flight may land within a frame or two; nothing after that.
        late = [t for t, _ in client.got.audio if interrupted_at + 0.1 < t < interrupted_at + 0.6]
        assert late == []
        generated = " ".join(
            m["data"]["text"]
            for t, m in client.got.messages
            if m["type"] == "bot-llm-text" and t < interrupted_at
        )
        await client.send("disconnect-bot")
        await client.wait_for("server-message", since=barge_at, timeout=20)

    body = await wait_settled(live, team.auth(), str(call["id"]))
    turns = body["transcript"]
    assert isinstance(turns, list)
    greeting = turns[0]
    assert greeting["role"] == "agent" and greeting["interrupted"] is True
    # Only what was played is kept: a strict prefix of what the agent meant to say.
    heard = " ".join(greeting["text"].split())
    meant = " ".join(generated.split())
    assert heard and len(heard) < len(meant)
    assert meant.startswith(heard)


async def test_a_caller_who_goes_on_after_a_pause_is_answered_with_all_their_words(
    live: LiveServer, tmp_path: Path
) -> None:
    """A pause after a complete clause ends the turn; the caller goes on over the agent's answer: the
    answer is taken back and the flow hears both halves together (``continue_window_ms``). On a busy
    machine the first half's words may come only after the caller went on: then no answer was started
    and both halves are answered together without one to take back; either way the flow hears all."""
    team = await live.world.team("acme")
    agent_id = await live.flow_agent(team)
    call = await live.web_call(team, agent_id)
    first = speech_pcm("I would like to book an appointment.", tmp_path)  # ~0.23 s of silence at its end
    rest = speech_pcm("For tomorrow at three pm.", tmp_path)  # ~0.24 s before its first word
    async with RTClient(str(call["websocket_url"])) as client:
        await client.wait_for("bot-stopped-speaking", timeout=30)
        spoke_at = time.monotonic()
        await client.stream(first)
        # A pause of ~0.67 s: the finished sentence ends the turn at 350 ms (550 at the latest), its
        # words already known, so the answer starts; the caller goes on 0.1-0.35 s after that.
        await client.silence(0.2)
        await client.stream(rest)
        await client.silence(1.0)
        async with asyncio.timeout(30):
            while not any(
                "three" in m["data"]["text"] for m in client.messages("bot-llm-text", since=spoke_at)
            ):
                await asyncio.sleep(0.05)
        await client.wait_for("bot-stopped-speaking", since=time.monotonic(), timeout=30)
        cut_off = bool(client.messages("bot-interrupted", since=spoke_at))
        await client.send("disconnect-bot")
        await client.wait_for("server-message", since=spoke_at, timeout=20)

    body = await wait_settled(live, team.auth(), str(call["id"]))
    turns = body["transcript"]
    assert isinstance(turns, list)
    said = [(t["role"], t["interrupted"], t["text"], t["barge_ins"]) for t in turns[1:]]
    # The answer that was cut is in the transcript, with the words the caller heard of it (none if it
    # was cut before its first frame played), and says why it stopped.
    cut = [s for s in said if s[0] == "agent" and s[1]]
    assert len(cut) == int(cut_off), said
    assert [s[:2] for s in said if s not in cut] == [("user", False), ("user", False), ("agent", False)], said
    assert all([b["reason"] for b in s[3] if b["outcome"] == "interrupted"] == ["continued"] for s in cut), (
        said
    )
    assert "appointment" in said[0][2].lower() and "tomorrow" in said[-2][2].lower(), said
    assert "tomorrow at three p.m." in said[-1][2].lower(), said
    exported = (await live.world.client.get("/metrics")).text.splitlines()
    assert f"callgate_turns_taken_back_total {1.0 if cut_off else 0.0}" in exported, said
