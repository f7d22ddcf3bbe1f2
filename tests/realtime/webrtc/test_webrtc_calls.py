"""Voice calls over the WebRTC transport with the embedded speech stack: an aiortc caller on loopback."""

from __future__ import annotations

import asyncio
import time
import wave
from pathlib import Path

import numpy as np
import pytest

from tests.support.live import LiveServer, wait_settled
from tests.support.rtvi_client import nonsilent_seconds, onset_seconds
from tests.support.speech import BOOKING, speech_pcm
from tests.support.webrtc_client import RTCClient, loopback_ice

pytestmark = pytest.mark.speech


@pytest.fixture(autouse=True)
def _loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    loopback_ice(monkeypatch)


async def webrtc_call(live: LiveServer, **fields: object) -> tuple[dict[str, object], dict[str, str]]:
    team = await live.world.team("acme")
    agent_id = await live.flow_agent(team)
    call = await live.web_call(team, agent_id, transport="webrtc", **fields)
    return call, team.auth()


async def test_voice_call_over_webrtc(live: LiveServer, tmp_path: Path) -> None:
    call, auth = await webrtc_call(live)
    speech = speech_pcm(BOOKING, tmp_path)
    async with RTCClient(str(call["webrtc_offer_url"]), str(call["token"])) as client:
        ready = client.messages("bot-ready")[0]["data"]
        assert ready["call_id"] == call["id"]
        assert ready["audio"]["codec"] == "opus" and ready["audio"]["output_sample_rate"] == 48000
        await client.wait_for("bot-stopped-speaking", timeout=30)  # the greeting played out
        assert nonsilent_seconds(client.audio_between(0), 16000) >= 1.0
        spoke_at = time.monotonic()
        await client.say(speech, then_silence_s=1.0)
        transcript = await client.wait_for("user-transcription", since=spoke_at, timeout=20)
        assert "appointment" in transcript["data"]["text"].lower()
        await client.wait_for("bot-started-speaking", since=spoke_at, timeout=20)
        answer_at = time.monotonic()
        await client.wait_for("bot-stopped-speaking", since=answer_at, timeout=30)
        await asyncio.sleep(0.3)  # the tail of the answer still in flight
        assert nonsilent_seconds(client.audio_between(spoke_at), 16000) >= 1.0
        metrics = await client.wait_for("metrics", since=answer_at)
        assert metrics["data"]["turn"]["total_ms"] > 0
        client.send("disconnect-bot")
        await client.wait_for("server-message", since=answer_at)
        await asyncio.sleep(0.5)
        endings = [m["data"] for m in client.messages("server-message", since=answer_at)]
        assert endings == [
            {"type": "call-ended", "reason": "caller_hangup"},
            {"type": "connection-closed", "code": 1000, "reason": "call ended: caller_hangup"},
        ]

    body = await wait_settled(live, auth, str(call["id"]))
    assert body["end_reason"] == "caller_hangup"
    # The caller's RTP stream in /metrics: every 20 ms packet of the call, none lost on loopback.
    exported = {
        line.split()[0]: float(line.split()[1])
        for line in (await live.world.client.get("/metrics")).text.splitlines()
        if line.startswith("callgate_caller_")
    }
    webrtc = '{transport="webrtc"}'
    assert exported[f"callgate_caller_rtp_packets_total{webrtc}"] > 5 * 50, exported
    assert exported[f"callgate_caller_rtp_lost_packets_total{webrtc}"] == 0, exported
    assert exported[f"callgate_caller_audio_concealed_seconds_total{webrtc}"] < 0.1, exported
    assert f"callgate_caller_audio_paused_seconds_total{webrtc}" in exported
    turns = body["transcript"]
    assert isinstance(turns, list)
    user = [t for t in turns if t["role"] == "user"]
    assert user and all(w in user[0]["text"].lower() for w in ("appointment", "tomorrow"))
    agent_after = [t for t in turns if t["role"] == "agent" and t["seq"] > user[0]["seq"]]
    assert agent_after and "tomorrow" in agent_after[0]["text"].lower()

    r = await live.world.client.get(f"/v1/calls/{call['id']}/recording", headers=auth)
    assert r.status_code == 200
    (tmp_path / "rec.wav").write_bytes(r.content)
    with wave.open(str(tmp_path / "rec.wav")) as w:
        stereo = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).reshape(-1, 2)
    assert nonsilent_seconds(np.ascontiguousarray(stereo[:, 0]), 16000) >= 1.0  # the caller
    assert nonsilent_seconds(np.ascontiguousarray(stereo[:, 1]), 16000) >= 1.0  # the agent


async def test_pcmu_only_caller(live: LiveServer, tmp_path: Path) -> None:
    """A G.711 offer (what SIP phones send) works end to end: the agent is heard, the caller understood."""
    call, auth = await webrtc_call(live)
    speech = speech_pcm(BOOKING, tmp_path)
    async with RTCClient(str(call["webrtc_offer_url"]), str(call["token"]), codec="PCMU") as client:
        assert client.messages("bot-ready")[0]["data"]["audio"]["output_sample_rate"] == 8000
        await client.wait_for("bot-stopped-speaking", timeout=30)
        assert nonsilent_seconds(client.audio_between(0), 16000) >= 1.0
        spoke_at = time.monotonic()
        await client.say(speech, then_silence_s=1.0)
        transcript = await client.wait_for("user-transcription", since=spoke_at, timeout=20)
        assert "appointment" in transcript["data"]["text"].lower()
    body = await wait_settled(live, auth, str(call["id"]))
    assert body["end_reason"] == "caller_hangup"  # closing the peer connection hangs up


async def test_barge_in_stops_the_agent_at_once(live: LiveServer, tmp_path: Path) -> None:
    """Caller speech over the agent holds its audio within a few frames of the speech onset (before any
    word is known), then the agent is cut off (``bot-interrupted``) once the words are a real turn."""
    call, auth = await webrtc_call(live)
    interruption = speech_pcm("Wait, wait. I need to talk to a person please.", tmp_path)
    async with RTCClient(str(call["webrtc_offer_url"]), str(call["token"])) as client:
        started = await client.wait_for("bot-started-speaking", timeout=30)
        assert started
        await asyncio.sleep(1.0)  # well into the greeting
        client.track.put(interruption)
        onset = time.monotonic() + onset_seconds(np.frombuffer(interruption, dtype=np.int16), 16000)
        await client.wait_for("bot-interrupted", timeout=10)
        cut_at = time.monotonic()
        await asyncio.sleep(1.0)  # the caller is still talking: the agent has nothing new to say yet
        before = client.audio_between(onset - 0.5, onset)
        held = client.audio_between(onset + 0.35, cut_at + 1.0)
        client.send("disconnect-bot")
        await client.wait_for("server-message", since=cut_at, timeout=10)
    assert nonsilent_seconds(before, 16000) >= 0.2  # the agent was speaking...
    # ...and nothing of it arrives 350 ms after the caller's onset (40 ms of sound holds it; the rest is
    # VAD, the caller's and the client's buffers on a shared machine), through to the cut and after.
    assert nonsilent_seconds(held, 16000) == 0.0
    assert cut_at - onset < 3.0  # words, or 700 ms of speech, decide the cut
    body = await wait_settled(live, auth, str(call["id"]))
    greeting = body["transcript"][0]  # type: ignore[index]
    assert greeting["role"] == "agent" and greeting["interrupted"] is True
    # Why the agent stopped is kept on its turn: held, then interrupted by words or by long speech.
    (barge_in,) = [b for b in greeting["barge_ins"] if b["outcome"] == "interrupted"]
    assert barge_in["reason"] in {"words", "long_speech"}
    assert 0 < barge_in["held_ms"] < 3000
