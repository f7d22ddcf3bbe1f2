"""End to end in headless Chromium: pipecat's own client SDK, unmodified, holds a voice call with callgate.

``@pipecat-ai/client-js`` with ``@pipecat-ai/websocket-transport`` (``ProtobufFrameSerializer``) connects
with ``{wsUrl: websocket_url + "&format=protobuf"}``, and with ``@pipecat-ai/small-webrtc-transport``
with ``{webrtcUrl: webrtc_offer_url}``. The npm packages are bundled with esbuild during the test (no
bundle is committed) and run from a page on another origin than callgate's (SmallWebRTC's offer and
PATCH requests go through CORS preflights, allowed by a publishable key that lists that origin).

Both transports default to ``DailyMediaManager``, which loads Daily's call-machine bundle from
c.daily.co; the tests run offline, so they pass the transports' own ``WavMediaManager`` (a constructor
option of both packages), as a site under a strict CSP would.

The fake microphone says a booking after the greeting; the page checks what pipecat's callbacks report
(user transcript, agent text) and measures the agent's audio (PCM handed to the player over WebSocket; an
AnalyserNode on the remote track over WebRTC). Everything runs in a loopback-only network namespace
(``unshare -n``) as in ``test_browser_sip.py``.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Page

from callgate.auth.keys import KeyType
from tests.support.browser import (
    REPO_ROOT,
    concat_wavs,
    launch_chromium,
    make_speech_wav,
    new_page,
    serve_static,
)
from tests.support.live import LiveServer, settled_call
from tests.support.webrtc_client import loopback_ice

pytestmark = [pytest.mark.e2e, pytest.mark.speech]

NETNS_ENV = "CALLGATE_E2E_PIPECAT_NETNS"
INSIDE = os.environ.get(NETNS_ENV) == "1"
INSIDE_TESTS = 2
inside_only = pytest.mark.skipif(not INSIDE, reason="runs in a loopback-only namespace (see the module doc)")

BUNDLE = """
import { PipecatClient } from '@pipecat-ai/client-js';
import * as ws from '@pipecat-ai/websocket-transport';
import * as webrtc from '@pipecat-ai/small-webrtc-transport';
window.Pipecat = { PipecatClient, ws, webrtc };
"""

PAGE = """<!doctype html><meta charset="utf-8"><title>pipecat client</title>
<script src="/js/pipecat.js"></script>
<script>
window.events = [];
window.heard = {seconds: 0, samples: 0};
const push = (name, detail) => window.events.push({name, detail: detail ?? null, t: performance.now()});

// Agent audio over WebRTC: an AnalyserNode on the remote track (Chrome feeds a remote track to Web
// Audio only while a media element plays it).
const measureTrack = (track) => {
  const stream = new MediaStream([track]);
  const sink = new Audio(); sink.srcObject = stream; sink.play().catch(() => {});
  const ctx = new AudioContext();
  const analyser = ctx.createAnalyser(); analyser.fftSize = 1024;
  ctx.createMediaStreamSource(stream).connect(analyser);
  const buf = new Float32Array(analyser.fftSize);
  setInterval(() => {
    analyser.getFloatTimeDomainData(buf);
    let sum = 0; for (const v of buf) sum += v * v;
    if (Math.sqrt(sum / buf.length) > 0.01) window.heard.seconds += 0.02;
  }, 20);
};

// Agent audio over WebSocket: the PCM the transport hands its player (20 ms windows above -40 dBFS).
const tapPlayer = (media, rate) => {
  const play = media.bufferBotAudio.bind(media);
  media.bufferBotAudio = (pcm, id) => {
    const window_ = rate / 50;
    for (let i = 0; i + window_ <= pcm.length; i += window_) {
      let sum = 0; for (let j = i; j < i + window_; j++) sum += (pcm[j] / 32768) ** 2;
      if (Math.sqrt(sum / window_) > 0.01) window.heard.seconds += 0.02;
    }
    window.heard.samples += pcm.length;
    return play(pcm, id);
  };
};

window.startCall = async ({transport, url}) => {
  const {PipecatClient, ws, webrtc} = window.Pipecat;
  let t;
  if (transport === 'websocket') {
    const media = new ws.WavMediaManager(640, 16000);
    tapPlayer(media, 24000);
    t = new ws.WebSocketTransport({serializer: new ws.ProtobufFrameSerializer(), mediaManager: media});
  } else {
    const media = new webrtc.WavMediaManager(640, 16000);
    t = new webrtc.SmallWebRTCTransport({iceServers: [], mediaManager: media});
  }
  const client = new PipecatClient({
    transport: t, enableMic: true, enableCam: false,
    callbacks: {
      onBotReady: (d) => push('bot-ready', d),
      onUserTranscript: (d) => push('user-transcript', d),
      onBotTtsText: (d) => push('bot-tts-text', d),
      onBotStartedSpeaking: () => push('bot-started-speaking'),
      onBotStoppedSpeaking: () => push('bot-stopped-speaking'),
      onServerMessage: (d) => push('server-message', d),
      onMetrics: (d) => push('metrics', d),
      onError: (e) => push('error', {type: e.type, data: e.data}),
      onDisconnected: () => push('disconnected'),
      onBotDisconnected: () => push('bot-disconnected'),
      onTrackStarted: (track, participant) => {
        // SmallWebRTC reports the bot's track without a participant; the microphone's is local.
        if (track.kind === 'audio' && !participant?.local) measureTrack(track);
      },
    },
  });
  window.client = client;
  const params = transport === 'websocket' ? {wsUrl: url} : {webrtcUrl: url};
  return await client.connect(params);
};
</script>
"""


# ------------------------------------------------------------------------ the namespace wrapper


@pytest.mark.skipif(INSIDE, reason="this is the wrapper; the browser tests run here")
def test_pipecat_clients_in_a_loopback_namespace() -> None:
    prefix: list[str] = []
    if os.geteuid() == 0:
        prefix = ["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$@"', "sh"]
    command = [*prefix, sys.executable, "-m", "pytest", __file__, "-k", "not loopback_namespace",
               "-p", "no:cacheprovider", "-q", "-W", "error"]  # fmt: skip
    result = subprocess.run(
        command,
        cwd=REPO_ROOT,
        env={**os.environ, NETNS_ENV: "1"},
        capture_output=True,
        text=True,
        timeout=900,
    )
    output = result.stdout[-30_000:] + result.stderr[-5_000:]
    assert result.returncode == 0, output
    summary = result.stdout.strip().splitlines()[-1]
    assert re.match(rf"^{INSIDE_TESTS} passed(, 1 deselected)? in ", summary), output


# ------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """pipecat's client packages bundled for the browser with esbuild, from node_modules."""
    esbuild = REPO_ROOT / "node_modules" / ".bin" / "esbuild"
    assert esbuild.exists(), "JS packages missing: run `npm ci` (scripts/test.sh does)"
    out = tmp_path_factory.mktemp("js")
    built = subprocess.run(
        [str(esbuild), "--bundle", "--format=iife", f"--outfile={out / 'pipecat.js'}", "--sourcefile=p.js",
         "--log-level=error"],
        input=BUNDLE, text=True, capture_output=True, cwd=REPO_ROOT,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    return out


@pytest.fixture
def page_origin(bundle: Path) -> Iterator[str]:
    with serve_static(mounts={"/js/": bundle}, pages={"/pipecat.html": PAGE}) as base:
        yield base


@pytest.fixture(autouse=True)
def _loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    loopback_ice(monkeypatch)


@pytest.fixture(scope="module")
def microphone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Silence through the greeting, then a booking, then silence."""
    folder = tmp_path_factory.mktemp("speech")
    speech = make_speech_wav(
        "I would like to book an appointment for tomorrow at three pm.", folder / "s.wav", engine="piper"
    )
    return concat_wavs([11.0, speech, 20.0], folder / "mic.wav")


@pytest.fixture
async def page(microphone: Path, page_origin: str) -> AsyncIterator[Page]:
    log: list[str] = []
    async with launch_chromium(fake_audio=microphone) as browser:
        page = await new_page(browser, log=log)
        await page.goto(f"{page_origin}/pipecat.html")
        try:
            yield page
        finally:
            print("\n".join(log[-200:]))


async def wait_event(page: Page, name: str, where: str = "d => true", *, timeout: float = 40) -> Any:
    match = f"e => e.name === {name!r} && (({where})(e.detail))"
    await page.wait_for_function(f"() => window.events.some({match})", timeout=timeout * 1000)
    return await page.evaluate(f"() => window.events.find({match}).detail")


async def voice_turn(live: LiveServer, page: Page, page_origin: str, transport: str) -> None:
    assert all(w.ok for w in await asyncio.to_thread(live.runtime.engines.warm_up))
    team = await live.world.team("acme")
    await team.key(KeyType.PUBLISHABLE, allowed_origins=[page_origin])  # CORS for SmallWebRTC's requests
    agent_id = await live.flow_agent(team)
    call = await live.web_call(team, agent_id, transport=transport)
    url = f"{call['websocket_url']}&format=protobuf" if transport == "websocket" else call["webrtc_offer_url"]
    ready = await page.evaluate("(args) => window.startCall(args)", {"transport": transport, "url": url})
    assert ready["call_id"] == call["id"]

    said = await wait_event(page, "user-transcript", "d => d.final && /appointment/i.test(d.text)")
    assert "tomorrow" in said["text"].lower()
    await wait_event(page, "bot-tts-text", "d => /tomorrow/i.test(d.text)", timeout=30)
    await wait_event(page, "metrics", "d => d.turn && d.turn.stt_ms !== null", timeout=30)
    await page.wait_for_function("() => window.heard.seconds >= 2.0", timeout=30_000)  # greeting + answer
    assert not await page.evaluate("() => window.events.filter((e) => e.name === 'error')")

    await page.evaluate("() => window.client.disconnect()")
    body = await settled_call(live, team.auth(), str(call["id"]))
    assert body["end_reason"] == "caller_hangup", body
    user = [t["text"].lower() for t in body["transcript"] if t["role"] == "user"]
    assert user and "appointment" in user[0]


# ------------------------------------------------------------------------ the tests (in the namespace)


@inside_only
async def test_pipecat_websocket_transport_with_protobuf_frames(
    live: LiveServer, page: Page, page_origin: str
) -> None:
    await voice_turn(live, page, page_origin, "websocket")
    heard = await page.evaluate("() => window.heard.samples")
    assert heard > 24000 * 2  # pipecat plays at 24 kHz: at least two seconds of agent audio arrived


@inside_only
async def test_pipecat_small_webrtc_transport(live: LiveServer, page: Page, page_origin: str) -> None:
    await voice_turn(live, page, page_origin, "webrtc")
