"""End to end in real headless Chromium: the browser SDK against a real callgate server.

A fake microphone plays a WAV made with piper; the page loads the SDK from the server, joins a web call
created through the API, and the test checks what the page heard and what the server stored.
"""

from __future__ import annotations

import asyncio
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from playwright.async_api import Page

from tests.support.browser import concat_wavs, launch_chromium, make_speech_wav, new_page, wait_event
from tests.support.live import LiveServer, settled_call
from tests.support.rtvi_client import nonsilent_seconds

pytestmark = [pytest.mark.e2e, pytest.mark.speech]

JOIN = """
async ({url, mode, microphone}) => {
  const sdk = await import('/static/callgate.js');
  window.events = [];
  const call = await sdk.connect({
    url, mode, microphone: microphone
      ? {echoCancellation: false, noiseSuppression: false, autoGainControl: false}
      : false,
    onEvent: (name, detail) => window.events.push({name, detail, t: performance.now()}),
  });
  window.call = call;
  return call.id;
}
"""


async def events(page: Page, name: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = await page.evaluate(
        "(name) => window.events.filter(e => e.name === name).map(e => ({...e.detail, t: e.t}))", name
    )
    return found


async def test_voice_call_in_chromium(live: LiveServer, tmp_path: Path) -> None:
    speech = make_speech_wav(
        "I would like to book an appointment for tomorrow at three pm.", tmp_path / "s.wav", engine="piper"
    )
    # Wait out the greeting, speak, then stay quiet while the agent answers.
    mic = concat_wavs([11.0, speech, 15.0], tmp_path / "mic.wav")
    team = await live.world.team("acme")
    agent_id = await live.flow_agent(team)
    call = await live.web_call(team, agent_id)
    log: list[str] = []
    async with launch_chromium(fake_audio=mic) as browser:
        page = await new_page(browser, log=log)
        await page.goto(live.url + "/")
        call_id = await page.evaluate(
            JOIN, {"url": call["websocket_url"], "mode": "audio", "microphone": True}
        )
        assert call_id == call["id"]
        said = await wait_event(page, "transcript", timeout=40, where="d => d.role === 'user' && d.final")
        assert "appointment" in said["text"].lower()
        answer = await wait_event(
            page, "transcript", timeout=30, where="d => d.role === 'agent' && /tomorrow/i.test(d.text)"
        )
        await wait_event(page, "agent-speaking", timeout=30, where="d => d === false", after=answer["t"])
        stats = await page.evaluate("() => window.call.stats")
        await page.evaluate("() => window.call.hangup()")
        ended = await wait_event(page, "ended", timeout=10)
    assert stats["nonSilentSamplesReceived"] / 16000 >= 1.0, log
    assert stats["samplesPlayed"] > 0
    assert ended["reason"] == "caller_hangup"

    body = await settled_call(live, team.auth(), str(call["id"]))
    assert body["status"] == "ended" and body["end_reason"] == "caller_hangup"
    user = [t for t in body["transcript"] if t["role"] == "user"]
    assert user and all(w in user[0]["text"].lower() for w in ("appointment", "tomorrow"))
    answers = [t for t in body["transcript"] if t["role"] == "agent" and t["seq"] > user[0]["seq"]]
    assert answers and "tomorrow" in answers[0]["text"].lower()

    r = await live.world.client.get(f"/v1/calls/{call['id']}/recording", headers=team.auth())
    assert r.status_code == 200
    (tmp_path / "rec.wav").write_bytes(r.content)
    with wave.open(str(tmp_path / "rec.wav")) as w:
        frames = w.readframes(w.getnframes())
    stereo = np.frombuffer(frames, dtype=np.int16).reshape(-1, 2)
    assert nonsilent_seconds(np.ascontiguousarray(stereo[:, 0]), 16000) >= 1.0
    assert nonsilent_seconds(np.ascontiguousarray(stereo[:, 1]), 16000) >= 1.0


async def test_barge_in_in_chromium(live: LiveServer, tmp_path: Path) -> None:
    speech = make_speech_wav(
        "Wait, wait. I need to talk to a person please.", tmp_path / "s.wav", engine="piper"
    )
    mic = concat_wavs([2.5, speech, 8.0], tmp_path / "mic.wav")  # talks over the greeting
    team = await live.world.team("acme")
    agent_id = await live.flow_agent(team)
    call = await live.web_call(team, agent_id)
    async with launch_chromium(fake_audio=mic) as browser:
        page = await new_page(browser)
        await page.goto(live.url + "/")
        await page.evaluate(JOIN, {"url": call["websocket_url"], "mode": "audio", "microphone": True})
        await wait_event(page, "interrupted", timeout=20)
        # Playback was flushed: nothing queued shortly after the interruption.
        await page.wait_for_function("() => window.call.stats.flushes >= 1", timeout=5000)
        await asyncio.sleep(0.3)
        stats = await page.evaluate("() => window.call.stats")
        generated = " ".join(e["text"] for e in await events(page, "transcript") if e["role"] == "agent")
        await page.evaluate("() => window.call.hangup()")
        await wait_event(page, "ended", timeout=10)
    assert stats["flushes"] >= 1
    assert stats["samplesQueued"] < 16000 * 0.1

    body = await settled_call(live, team.auth(), str(call["id"]))
    greeting = body["transcript"][0]
    assert greeting["role"] == "agent" and greeting["interrupted"] is True
    assert greeting["text"] and len(greeting["text"]) < len("".join(generated.split()) or "x" * 999)


async def test_text_mode_in_chromium(live: LiveServer) -> None:
    team = await live.world.team("acme")
    agent_id = await live.flow_agent(team)
    call = await live.web_call(team, agent_id, mode="text")
    async with launch_chromium() as browser:
        page = await new_page(browser)
        await page.goto(live.url + "/")
        await page.evaluate(JOIN, {"url": call["websocket_url"], "mode": "text", "microphone": False})
        await wait_event(page, "transcript", timeout=20, where="d => d.role === 'agent'")
        await page.evaluate("() => window.call.sendText('What are your opening hours?')")
        answer = await wait_event(
            page, "transcript", timeout=20, where="d => d.role === 'agent' && /open/i.test(d.text)"
        )
        stats = await page.evaluate("() => window.call.stats")
        await page.evaluate("() => window.call.hangup()")
        await wait_event(page, "ended", timeout=10)
    assert answer["text"]
    assert stats["samplesReceived"] == 0  # no audio in text mode
    body = await settled_call(live, team.auth(), str(call["id"]))
    assert any("opening hours" in t["text"].lower() for t in body["transcript"] if t["role"] == "user")
