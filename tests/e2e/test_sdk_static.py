"""The browser SDK (web/callgate.js) and demo page in real headless Chromium, against a fake
RTVI WebSocket server written here. No callgate server is involved: this proves the client
side of docs/realtime-protocol.md on its own (fake microphone in, paced PCM out, barge-in,
text mode, mode switch, hang-up, close codes).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from tests.support import browser as b

pytestmark = pytest.mark.e2e

FRAME_MS = 20
INPUT_RATE = 16000
SPEECH_TEXT = "Hello, this is a test of the callgate microphone path. One, two, three, four, five."
GOOD_TOKEN = "good-token"

SDK_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<link rel="icon" href="data:,"><title>sdk test</title></head><body><script type="module">
  import * as callgate from '/static/callgate.js';
  window.callgate = callgate;
  window.events = [];
  window.maxPlaybackLevel = 0;
  window.startCall = async (opts) => {
    window.call = await callgate.connect({
      ...opts,
      onEvent: (name, detail) => window.events.push({ name, detail, t: performance.now() }),
    });
    setInterval(() => {
      window.maxPlaybackLevel = Math.max(window.maxPlaybackLevel, window.call.stats.playbackLevel);
    }, 20);
    return window.call.id;
  };
  window.sdkLoaded = true;
</script></body></html>
"""

# Counts getUserMedia calls, so a test can prove text mode never asks for the microphone.
COUNT_GET_USER_MEDIA = """
window.getUserMediaCalls = 0;
const original = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
navigator.mediaDevices.getUserMedia = (constraints) => {
  window.getUserMediaCalls += 1;
  return original(constraints);
};
"""


# ---- fake RTVI server -------------------------------------------------------------------


@dataclass
class Session:
    """What the fake server saw on one WebSocket connection."""

    scenario: str
    client_ready: dict[str, Any] | None = None
    messages: list[dict[str, Any]] = field(default_factory=list)
    frames: list[bytes] = field(default_factory=list)
    sent_samples: int = 0
    interrupted_at_sample: int | None = None
    mode: str = "audio"
    output_rate: int = 16000
    closed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def audio(self) -> np.ndarray:
        return b.pcm16_to_float(b"".join(self.frames))

    def of_type(self, type_: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m.get("type") == type_]


def rtvi(type_: str, data: dict[str, Any] | None = None, id_: str | None = None) -> str:
    message: dict[str, Any] = {"label": "rtvi-ai", "type": type_, "data": data or {}}
    if id_ is not None:
        message["id"] = id_
    return json.dumps(message)


class FakeRtviServer:
    """Speaks the callgate real-time protocol well enough to exercise the SDK.

    The path picks a scenario: ``/ws/tone`` plays 1.5 s of 440 Hz after bot-ready;
    ``/ws/barge`` queues audio ahead of real time and interrupts it mid-way; ``/ws/quiet``
    sends no audio. Caller audio is recorded and answered with user-* events.
    """

    def __init__(self) -> None:
        self.sessions: list[Session] = []
        self.port = 0
        self._tasks: set[asyncio.Task[None]] = set()

    def url(self, scenario: str, token: str = GOOD_TOKEN) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/{scenario}?token={token}"

    async def handler(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        url = urlsplit(ws.request.path)
        session = Session(scenario=url.path.rsplit("/", 1)[-1])
        self.sessions.append(session)
        try:
            if parse_qs(url.query).get("token") != [GOOD_TOKEN]:
                await ws.close(4401, "invalid token")
                return
            first = await ws.recv()
            try:
                hello = json.loads(first)
            except (TypeError, ValueError):
                hello = {}
            if not isinstance(hello, dict) or hello.get("type") != "client-ready":
                await ws.close(4400, "first message must be client-ready")
                return
            session.messages.append(hello)
            session.client_ready = hello["data"]
            session.mode = session.client_ready.get("mode", "audio")
            session.output_rate = session.client_ready.get("audio", {}).get("output_sample_rate", 16000)
            await ws.send(
                rtvi(
                    "bot-ready",
                    {
                        "version": "1.0.0",
                        "about": {"server": "fake"},
                        "call_id": "call_test",
                        "mode": session.mode,
                        "audio": {"input_sample_rate": INPUT_RATE, "output_sample_rate": session.output_rate},
                    },
                )
            )
            play = asyncio.create_task(self._play(ws, session))
            self._tasks.add(play)
            try:
                await self._receive(ws, session)
            finally:
                play.cancel()
                with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                    await play
                self._tasks.discard(play)
        except ConnectionClosed:
            pass
        finally:
            session.closed.set()

    async def _receive(self, ws: ServerConnection, session: Session) -> None:
        speaking = False
        quiet_frames = 0
        loud_frames = 0
        async for message in ws:
            if isinstance(message, bytes):
                session.frames.append(message)
                level = b.rms(b.pcm16_to_float(message))
                if level > 0.01:
                    loud_frames += 1
                    quiet_frames = 0
                    if not speaking and loud_frames >= 5:
                        speaking = True
                        await ws.send(rtvi("user-started-speaking"))
                        await ws.send(rtvi("user-transcription", self._transcript("hello", final=False)))
                else:
                    quiet_frames += 1
                    if speaking and quiet_frames >= 40:
                        speaking = False
                        loud_frames = 0
                        await ws.send(rtvi("user-stopped-speaking"))
                        text = f"hello, I heard {b.active_seconds(session.audio, INPUT_RATE):.1f} seconds"
                        await ws.send(rtvi("user-transcription", self._transcript(text, final=True)))
                continue
            msg = json.loads(message)
            session.messages.append(msg)
            kind, data = msg.get("type"), msg.get("data") or {}
            if kind == "send-text":
                await self._answer_text(ws, data)
            elif kind == "client-message" and data.get("t") == "set-mode":
                session.mode = data["d"]["mode"]
                await ws.send(
                    rtvi("server-response", {"t": "set-mode", "d": {"mode": session.mode}}, msg.get("id"))
                )
            elif kind == "disconnect-bot":
                await ws.send(rtvi("server-message", {"type": "call-ended", "reason": "caller_hangup"}))
                await ws.close(1000, "call ended")
                return

    @staticmethod
    def _transcript(text: str, *, final: bool) -> dict[str, Any]:
        return {"text": text, "final": final, "timestamp": "2026-11-22T00:00:00Z", "user_id": "caller"}

    async def _answer_text(self, ws: ServerConnection, data: dict[str, Any]) -> None:
        # As callgate does: LLM text as generated, each sentence as bot-tts-text when it is
        # delivered (spoken, or as text in text mode), then the turn's latency closes the turn.
        sentence = f"You said: {data['content']}"
        for chunk in ["You", " said", ": ", data["content"]]:
            await ws.send(rtvi("bot-llm-text", {"text": chunk}))
        spoken = data.get("options", {}).get("audio_response")
        if spoken:
            await ws.send(rtvi("bot-started-speaking"))
        await ws.send(rtvi("bot-tts-text", {"text": sentence}))
        if spoken:
            await ws.send(rtvi("bot-stopped-speaking"))
        turn = {
            "endpointing_ms": None,
            "stt_ms": None,
            "agent_first_token_ms": 12.5,
            "tts_first_audio_ms": None,
            "total_ms": None,
            "interrupted": False,
        }
        metrics = {"processing": [{"processor": "agent", "value": 0.0125}], "ttfb": [], "turn": turn}
        await ws.send(rtvi("metrics", metrics))

    async def _play(self, ws: ServerConnection, session: Session) -> None:
        rate = session.output_rate
        frame = rate * FRAME_MS // 1000
        if session.scenario == "tone":
            await asyncio.sleep(0.2)
            samples = b.tone(440, 1.5, rate, amplitude=0.4)
            await ws.send(rtvi("bot-started-speaking"))
            await ws.send(rtvi("bot-tts-text", {"text": "A"}))
            await self._send_paced(ws, session, samples, frame, ahead_frames=0)
            await ws.send(rtvi("bot-tts-text", {"text": "tone."}))
            await ws.send(rtvi("bot-stopped-speaking"))
        elif session.scenario == "barge":
            await asyncio.sleep(0.2)
            samples = b.tone(440, 4.0, rate, amplitude=0.4)
            await ws.send(rtvi("bot-started-speaking"))
            await ws.send(rtvi("bot-tts-text", {"text": "This will be interrupted"}))
            # Queue 1 s ahead of real time (as a server with a deep buffer would) so that the
            # interruption has something in the client's ring buffer to flush.
            sender = asyncio.create_task(self._send_paced(ws, session, samples, frame, ahead_frames=50))
            await asyncio.sleep(0.6)
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender
            session.interrupted_at_sample = session.sent_samples
            await ws.send(rtvi("bot-interrupted"))
            await ws.send(rtvi("bot-stopped-speaking"))

    @staticmethod
    async def _send_paced(
        ws: ServerConnection, session: Session, samples: np.ndarray, frame: int, *, ahead_frames: int
    ) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        for index, offset in enumerate(range(0, len(samples) - frame + 1, frame)):
            due = start + max(0, index - ahead_frames) * FRAME_MS / 1000
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            await ws.send(b.float_to_pcm16(samples[offset : offset + frame]))
            session.sent_samples += frame


# ---- fixtures ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def speech_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("audio") / "speech.wav"
    return b.make_speech_wav(SPEECH_TEXT, path, rate=48000, lead_silence_s=0.5, tail_silence_s=2.0)


@pytest.fixture
async def fake_server() -> AsyncIterator[FakeRtviServer]:
    fake = FakeRtviServer()
    async with serve(fake.handler, "127.0.0.1", 0, max_size=2**20) as server:
        fake.port = next(iter(server.sockets)).getsockname()[1]
        yield fake


@pytest.fixture
def web_call_requests() -> list[dict[str, Any]]:
    return []


@pytest.fixture
def static_url(fake_server: FakeRtviServer, web_call_requests: list[dict[str, Any]]) -> Iterator[str]:
    def create_web_call(body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        web_call_requests.append(body)
        return 201, {
            "id": "call_test",
            "status": "created",
            "agent_id": "agent_demo",
            "created_at": "2026-11-22T00:00:00Z",
            "token": GOOD_TOKEN,
            "expires_at": "2026-11-22T00:01:00Z",
            "websocket_url": fake_server.url("tone"),
        }

    index = (b.WEB_DIR / "index.html").read_text()
    with b.serve_static(
        pages={"/": index, "/sdk-test.html": SDK_PAGE}, posts={"/demo/web-call": create_web_call}
    ) as url:
        yield url


@pytest.fixture
async def page(speech_wav: Path, static_url: str) -> AsyncIterator[Any]:
    log: list[str] = []
    async with b.launch_chromium(fake_audio=speech_wav) as browser:
        page = await b.new_page(browser, log=log)
        await page.add_init_script(COUNT_GET_USER_MEDIA)
        await page.goto(f"{static_url}/sdk-test.html")
        await page.wait_for_function("() => window.sdkLoaded === true", timeout=10_000)
        yield page
        print("\n".join(log))  # shown by pytest when the test fails
        errors = [line for line in log if line.startswith("pageerror")]
        assert not errors, errors


# ---- helpers ----------------------------------------------------------------------------


async def wait_until(
    predicate: Callable[[], bool], *, timeout: float = 10.0, what: str = "condition"
) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def wait_for_event(page: Any, name: str, *, timeout: float = 10.0) -> None:
    await page.wait_for_function(
        "(name) => window.events.some((e) => e.name === name)", arg=name, timeout=timeout * 1000
    )


async def events(page: Any, name: str) -> list[Any]:
    return await page.evaluate(
        "(name) => window.events.filter((e) => e.name === name).map((e) => e.detail)", name
    )


async def stats(page: Any) -> dict[str, float]:
    return await page.evaluate("() => ({ ...window.call.stats })")


def _pieces_in_order(source: Any, received: Any, rate: int, piece_s: float = 0.5) -> list[float]:
    """Each voiced half second of ``source``, looked for in ``received`` after the one before it: the
    correlation score of each (0 if not found after it). Not one alignment of the whole: when the machine
    is loaded, Chromium's fake capture device can skip a moment, which shifts everything after it (seen
    once: score 0.60 for the whole, the pieces intact); one piece may straddle such a skip."""
    step = int(rate * piece_s)
    at, scores = 0, []
    for start in range(0, len(source) - step + 1, step):
        piece = source[start : start + step]
        if b.active_seconds(piece, rate) < piece_s / 2:
            continue
        score, lag = b.xcorr(piece, received[at:])
        if lag < 0:
            scores.append(0.0)
            continue
        scores.append(round(score, 3))
        at += lag + step // 2
    return scores


# ---- tests ------------------------------------------------------------------------------


async def test_voice_call_sends_microphone_and_plays_agent_audio(
    page: Any, fake_server: FakeRtviServer, speech_wav: Path
) -> None:
    call_id = await page.evaluate(
        "([url, microphone]) => window.startCall({ url, microphone })",
        [fake_server.url("tone"), b.RAW_MICROPHONE],
    )
    assert call_id == "call_test"
    session = fake_server.sessions[-1]
    assert session.client_ready is not None
    assert session.client_ready["version"] == "1.0.0"
    assert session.client_ready["about"]["library"] == "callgate-js"
    assert session.client_ready["audio"] == {"output_sample_rate": 16000}
    assert session.client_ready["mode"] == "audio"

    # The whole utterance (0.5 s lead + speech + 2 s tail) reaches the server.
    source, source_rate = b.read_wav(speech_wav)
    source_16k = b.resample(source, source_rate, INPUT_RATE)
    expected_s = len(source_16k) / INPUT_RATE
    await wait_until(lambda: len(session.frames) * 0.02 >= expected_s, timeout=20, what="the caller's audio")

    assert {len(frame) for frame in session.frames} == {INPUT_RATE * FRAME_MS // 1000 * 2}
    received = session.audio
    assert b.active_seconds(received, INPUT_RATE) >= 1.0
    scores = _pieces_in_order(source_16k, received, INPUT_RATE)
    assert len(scores) >= 4 and sum(score < 0.9 for score in scores) <= 1, (
        f"caller audio does not match the source: half-second pieces found with scores {scores}"
    )

    # Agent audio: 1.5 s of 440 Hz, received, played, heard at the worklet's output.
    await wait_for_event(page, "playback")
    await page.wait_for_function("() => window.call.stats.samplesPlayed >= 0.95 * 24000", timeout=5000)
    s = await stats(page)
    assert s["framesReceived"] == 75
    assert s["nonSilentSamplesReceived"] >= INPUT_RATE
    assert s["samplesPlayed"] <= s["samplesReceived"]
    assert s["flushes"] == 0
    # Gapless means nothing is lost or reordered: whatever arrived is played, all of it. (Whether the
    # queue ran dry for a moment depends on how the loaded machine schedules the fake server's frames;
    # after a dry spell the worklet re-buffers, which is what the playback-stats test checks.)
    await page.wait_for_function(
        "() => window.call.stats.samplesQueued === 0"
        " && window.call.stats.samplesPlayed >= 0.99 * window.call.stats.samplesReceived",
        timeout=5000,
    )
    s = await stats(page)
    assert s["flushedSamples"] == 0
    assert abs(s["samplesPlayed"] - s["samplesReceived"]) <= 0.01 * s["samplesReceived"]  # resampler rounding
    assert await page.evaluate("() => window.maxPlaybackLevel") > 0.2  # a 0.4 sine has RMS 0.28

    # User events came back from the caller's speech; the agent's tts text became one bubble.
    assert await events(page, "user-speaking") == [True, False]
    user = [t for t in await events(page, "transcript") if t["role"] == "user"]
    assert user[0] == {
        "role": "user",
        "text": "hello",
        "final": False,
        "turnId": 0,
        "timestamp": "2026-11-22T00:00:00Z",
    }
    assert user[-1]["final"] and user[-1]["text"].startswith("hello, I heard")
    agent = [t for t in await events(page, "transcript") if t["role"] == "agent"]
    assert agent[-1] == {"role": "agent", "text": "A tone.", "final": True, "turnId": 0}
    assert await events(page, "agent-speaking") == [True, False]


async def test_interruption_flushes_queued_playback_at_once(page: Any, fake_server: FakeRtviServer) -> None:
    await page.evaluate("(url) => window.startCall({ url, microphone: false })", fake_server.url("barge"))
    await wait_for_event(page, "interrupted")
    session = fake_server.sessions[-1]
    assert session.interrupted_at_sample is not None

    # Let the flush reach the worklet and its stats come back, then watch playback stand still.
    await asyncio.sleep(0.3)
    before = await stats(page)
    await asyncio.sleep(0.5)
    after = await stats(page)

    assert after["flushes"] == 1
    assert after["samplesReceived"] == session.interrupted_at_sample
    assert after["samplesQueued"] == 0
    assert after["samplesPlayed"] == before["samplesPlayed"], "playback went on after bot-interrupted"
    # About 1 s was queued ahead of real time; most of it must have been dropped, not played.
    assert after["flushedSamples"] >= 0.5 * INPUT_RATE
    assert after["samplesPlayed"] <= after["samplesReceived"] - 0.5 * INPUT_RATE
    assert await page.evaluate("() => window.call.stats.playbackLevel") == 0

    agent = [t for t in await events(page, "transcript") if t["role"] == "agent"]
    assert agent[-1] == {
        "role": "agent",
        "text": "This will be interrupted",
        "final": True,
        "turnId": 0,
        "interrupted": True,
    }


async def test_text_mode_needs_no_microphone(page: Any, fake_server: FakeRtviServer) -> None:
    await page.evaluate(
        "(url) => window.startCall({ url, mode: 'text', microphone: false })", fake_server.url("quiet")
    )
    session = fake_server.sessions[-1]
    assert session.client_ready is not None
    assert session.client_ready["mode"] == "text"

    await page.evaluate("() => window.call.sendText('  what time is it?  ')")
    await page.wait_for_function(
        "() => window.events.some((e) => e.name === 'transcript' && e.detail.role === 'agent'"
        " && e.detail.final)"
    )
    send_text = session.of_type("send-text")
    assert [m["data"] for m in send_text] == [
        {"content": "what time is it?", "options": {"run_immediately": True, "audio_response": False}}
    ]
    transcript = await events(page, "transcript")
    assert transcript[0] == {
        "role": "user",
        "text": "what time is it?",
        "final": True,
        "turnId": 0,
        "typed": True,
    }
    agent = [t for t in transcript if t["role"] == "agent"]
    said = "You said: what time is it?"
    assert [(t["text"], t["final"]) for t in agent] == [
        ("You", False),
        ("You said", False),
        ("You said: ", False),
        (said, False),
        (said, True),  # the turn's metrics close it
    ]
    [metrics] = await events(page, "metrics")
    assert metrics["turn"]["agent_first_token_ms"] == 12.5

    assert await page.evaluate("() => window.getUserMediaCalls") == 0
    assert await page.evaluate("() => window.call.audioContext") is None
    assert session.frames == []


async def test_set_mode_mute_and_hangup(page: Any, fake_server: FakeRtviServer) -> None:
    await page.evaluate(
        "([url, microphone]) => window.startCall({ url, mode: 'text', microphone })",
        [fake_server.url("quiet"), b.RAW_MICROPHONE],
    )
    session = fake_server.sessions[-1]
    assert await page.evaluate("() => window.getUserMediaCalls") == 0

    # Switching to voice+text starts the microphone; the server's confirmation settles the promise.
    assert await page.evaluate("() => window.call.setMode('audio_text')") == "audio_text"
    [set_mode] = session.of_type("client-message")
    assert set_mode["data"] == {"t": "set-mode", "d": {"mode": "audio_text"}}
    assert await events(page, "mode") == [{"mode": "audio_text"}]
    assert await page.evaluate("() => window.getUserMediaCalls") == 1
    await wait_until(lambda: len(session.frames) >= 25, what="caller audio after the mode switch")

    await page.evaluate("() => window.call.sendText('and now?')")
    await wait_until(lambda: len(session.of_type("send-text")) == 1, what="send-text")
    assert session.of_type("send-text")[0]["data"]["options"]["audio_response"] is True

    await page.evaluate("() => window.call.mute(true)")
    await wait_until(lambda: len(session.of_type("client-message")) == 2, what="the mute message")
    assert session.of_type("client-message")[1]["data"] == {"t": "mute", "d": {"muted": True}}
    await asyncio.sleep(0.2)  # frames already in flight
    muted_from = len(session.frames)
    await wait_until(lambda: len(session.frames) >= muted_from + 25, what="frames while muted")
    assert b.rms(b.pcm16_to_float(b"".join(session.frames[muted_from:]))) == 0.0

    ended = await page.evaluate("() => window.call.hangup()")
    assert ended == {"code": 1000, "reason": "caller_hangup", "wasClean": True}
    assert [m["data"] for m in session.of_type("disconnect-bot")] == [{}]
    await asyncio.wait_for(session.closed.wait(), 5)
    assert await events(page, "ended") == [ended]
    assert await page.evaluate("() => window.call.state") == "ended"
    # The SDK opened the microphone, so it released it.
    await page.wait_for_function("() => window.call.audioContext.state === 'closed'", timeout=5000)


async def test_connect_rejects_with_the_close_code(page: Any, fake_server: FakeRtviServer) -> None:
    error = await page.evaluate(
        """(url) => window.startCall({ url, microphone: false }).then(
             () => null, (e) => ({ name: e.name, code: e.code, reason: e.reason, message: e.message }))""",
        fake_server.url("quiet", token="wrong"),
    )
    assert error is not None
    assert error["name"] == "CallError"
    assert error["code"] == 4401
    assert error["reason"] == "invalid token"


async def test_demo_page_call_transcript_text_and_hangup(
    page: Any, static_url: str, fake_server: FakeRtviServer, web_call_requests: list[dict[str, Any]]
) -> None:
    await page.goto(f"{static_url}/")
    await page.get_by_role("button", name="Call").click()
    await page.wait_for_function(
        "() => window.demoCall && window.demoCall.state === 'connected'", timeout=10_000
    )
    assert web_call_requests == [{"mode": "audio", "transport": "websocket"}]
    status = page.get_by_role("status")
    await page.wait_for_function(
        "() => document.getElementById('status').textContent.startsWith('Connected')"
    )
    assert "call_test" in await status.text_content()

    log = page.locator("#transcript")
    await log.locator("li.agent", has_text="A tone.").wait_for(timeout=10_000)
    await log.locator("li.user:not(.interim)", has_text="hello, I heard").wait_for(timeout=15_000)

    await page.get_by_label("Message to the agent").fill("hi from the keyboard")
    await page.get_by_role("button", name="Send").click()
    await log.locator("li.user", has_text="hi from the keyboard").wait_for()
    await log.locator("li.agent", has_text="You said: hi from the keyboard").wait_for()
    await page.locator("#latency:not([hidden])").wait_for()
    assert await page.locator("#latency-rows td").nth(3).text_content() == "13"

    await page.get_by_role("button", name="Mute").click()
    assert await page.get_by_role("button", name="Unmute").get_attribute("aria-pressed") == "true"

    await page.get_by_role("button", name="Hang up").click()
    await page.wait_for_function(
        "() => document.getElementById('status').textContent.startsWith('Call ended')"
    )
    assert await status.text_content() == "Call ended: caller_hangup (1000)."
    assert await page.get_by_role("button", name="Call").is_enabled()
    session = fake_server.sessions[-1]
    assert session.client_ready is not None
    assert session.client_ready["mode"] == "audio"
    assert len(session.of_type("disconnect-bot")) == 1
