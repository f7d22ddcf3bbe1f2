"""End to end over WebRTC in real headless Chromium: callgate's SDK (``transport: "webrtc"``) against a
real callgate server, Opus both ways, RTVI on the data channel.

The ``case_*`` functions run in one child pytest inside a fresh network namespace that has only
loopback (``unshare -n``, as root; without root the child runs on the host network), so ICE sees
127.0.0.1 alone; each ``test_*`` reports its case. In the child, aioice is told to gather 127.0.0.1 (it
skips loopback by default) and Chromium runs with ``--allow-loopback-in-peer-connection``.

The agent's audio is measured twice in the page: by the SDK's ``stats`` and by an independent
AnalyserNode on the received stream (an ``<audio>`` element's ``inbound-rtp.audioLevel`` stays 0 while
muted, so levels are read from the stream itself).

``case_demo_page`` drives the demo page at ``/`` as a person would (choose WebRTC, press Call, talk,
press keys, hang up); the keys go out as Chromium's own RFC 4733 telephone-events. In the same browser
it then calls an agent over WebRTC from the dashboard's "Try it" panel (signed in as a member) and
from the widget with ``data-transport="webrtc"`` on another origin.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import wave
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import numpy as np
import pytest
from playwright.async_api import Page, expect

from callgate.auth.keys import KeyType
from callgate.clock import utcnow
from callgate.domain.bootstrap import bootstrap
from callgate.domain.users import Role
from tests.support.browser import (
    RAW_MICROPHONE,
    REPO_ROOT,
    concat_wavs,
    launch_chromium,
    make_speech_wav,
    new_page,
    serve_static,
    wait_event,
)
from tests.support.dashboard import PASSWORD, make_user
from tests.support.live import LiveServer, settled_call
from tests.support.rtvi_client import nonsilent_seconds
from tests.support.webrtc_client import loopback_ice
from tests.support.world import Team

pytestmark = [pytest.mark.e2e, pytest.mark.speech]

NETNS_ENV = "CALLGATE_E2E_NETNS"
CHILD_TIMEOUT_S = 300

JOIN = """
async ({url, token, iceServers, microphone}) => {
  const sdk = await import('/static/callgate.js');
  window.events = [];
  const call = await sdk.connect({
    transport: 'webrtc', url, token, iceServers, mode: 'audio', microphone,
    onEvent: (name, detail) => {
      window.events.push({name, detail, t: performance.now()});
      // What the caller had heard just after a barge-in (the tap lags by one 20 ms chunk).
      const heard = () => (window.heardAtCut = window.call.stats.nonSilentSamplesReceived);
      if (name === 'interrupted') setTimeout(heard, 60);
    },
  });
  window.call = call;
  // An independent meter on what the agent's track delivers: RMS every 20 ms.
  while (!call.remoteStream) await new Promise((r) => setTimeout(r, 10));
  const ctx = new AudioContext();
  const analyser = ctx.createAnalyser();
  analyser.fftSize = 1024;
  ctx.createMediaStreamSource(call.remoteStream).connect(analyser);
  const buf = new Float32Array(analyser.fftSize);
  window.levels = [];
  setInterval(() => {
    analyser.getFloatTimeDomainData(buf);
    let energy = 0;
    for (const s of buf) energy += s * s;
    window.levels.push([performance.now(), Math.sqrt(energy / buf.length)]);
  }, 20);
  return call.id;
}
"""


# ---- the parent side: re-run each case in a loopback-only network namespace ---------------------


def _namespace_prefix() -> list[str]:
    if os.geteuid() == 0 and shutil.which("unshare") and shutil.which("ip"):
        return ["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$@"', "sh"]
    return []  # not root: the child runs on the host network (still loopback-only ICE on the server)


CASES = ("case_voice_call", "case_barge_in", "case_demo_page")


@pytest.fixture(scope="module")
def namespace_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str | None]:
    """Run every ``case_*`` in one child pytest in the namespace (one interpreter, one model warm-up);
    answer each case's failure text, or None when it passed."""
    report = tmp_path_factory.mktemp("webrtc") / "cases.xml"
    cmd = [
        *_namespace_prefix(),
        sys.executable,
        "-m",
        "pytest",
        *(f"{Path(__file__).relative_to(REPO_ROOT)}::{name}" for name in CASES),
        "-o",
        "python_functions=case_*",
        "-p",
        "no:cacheprovider",
        "-q",
        f"--junitxml={report}",
    ]
    child = subprocess.Popen(
        cmd,
        cwd=REPO_ROOT,
        env={**os.environ, NETNS_ENV: "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # one process group: the browser goes with it on a timeout
    )
    try:
        output, _ = child.communicate(timeout=CHILD_TIMEOUT_S * len(CASES))
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        output, _ = child.communicate()
        pytest.fail(f"the WebRTC cases timed out:\n{output[-8000:]}")
    assert report.exists(), f"the child pytest did not run:\n{output[-8000:]}"
    results: dict[str, str | None] = {}
    for case in ElementTree.parse(report).getroot().iter("testcase"):
        problems = [e for e in case if e.tag in ("failure", "error", "skipped")]
        text = "\n".join(f"{p.get('message') or ''}\n{p.text or ''}" for p in problems)
        results[case.get("name", "")] = text if problems else None
    missing = set(CASES) - set(results)
    assert not missing, f"cases that did not run: {missing}\n{output[-8000:]}"
    return results


def run_case(results: dict[str, str | None], name: str) -> None:
    failure = results[name]
    assert failure is None, f"{name} failed in the network namespace:\n{failure[-8000:]}"


def test_voice_call_over_webrtc(namespace_run: dict[str, str | None]) -> None:
    run_case(namespace_run, "case_voice_call")


def test_barge_in_over_webrtc(namespace_run: dict[str, str | None]) -> None:
    run_case(namespace_run, "case_barge_in")


def test_demo_page_dashboard_and_widget_over_webrtc(namespace_run: dict[str, str | None]) -> None:
    run_case(namespace_run, "case_demo_page")


# ---- the child side: server and browser inside the namespace ------------------------------------


@pytest.fixture
async def child(live: LiveServer, monkeypatch: pytest.MonkeyPatch) -> LiveServer:
    """The server for a case: ICE on loopback, speech models loaded before the browser starts (each
    case is a fresh process; a cold first call would make the agent's greeting seconds late)."""
    assert os.environ.get(NETNS_ENV) == "1", "case_* functions run through test_* (run_case)"
    loopback_ice(monkeypatch)
    await asyncio.to_thread(live.runtime.engines.warm_up)
    return live


async def join(page: Page, live: LiveServer, call: dict[str, Any]) -> str:
    await page.goto(live.url + "/")
    args = {
        "url": call["webrtc_offer_url"],
        "token": call["token"],
        "iceServers": call["ice_servers"],
        "microphone": RAW_MICROPHONE,
    }
    call_id: str = await page.evaluate(JOIN, args)
    return call_id


async def loud_seconds(page: Page, start: float = 0, end: float = float("inf")) -> float:
    """Seconds (page time, ms bounds) in which the AnalyserNode measured agent audio above -40 dBFS."""
    levels: list[list[float]] = await page.evaluate("() => window.levels")
    return sum(0.02 for t, level in levels if start <= t < end and level > 0.01)


async def case_voice_call(child: LiveServer, tmp_path: Path) -> None:
    live = child
    speech = make_speech_wav(
        "I would like to book an appointment for tomorrow at three pm.", tmp_path / "s.wav", engine="piper"
    )
    mic = concat_wavs([11.0, speech, 15.0], tmp_path / "mic.wav")  # after the greeting
    team = await live.world.team("acme")
    agent_id = await live.flow_agent(team)
    call = await live.web_call(team, agent_id, transport="webrtc")
    log: list[str] = []
    async with launch_chromium(fake_audio=mic) as browser:
        page = await new_page(browser, log=log)
        assert await join(page, live, call) == call["id"]
        said = await wait_event(page, "transcript", timeout=40, where="d => d.role === 'user' && d.final")
        assert "appointment" in said["text"].lower()
        answer = await wait_event(
            page, "transcript", timeout=30, where="d => d.role === 'agent' && /tomorrow/i.test(d.text)"
        )
        await wait_event(page, "agent-speaking", timeout=30, where="d => d === false", after=answer["t"])
        await asyncio.sleep(0.5)  # the last words leave the jitter buffer
        stats = await page.evaluate("() => window.call.stats")
        heard = await loud_seconds(page)
        rtp = await page.evaluate(
            """async () => {
                 const report = await window.call.getStats();
                 const inbound = [...report.values()].find((s) => s.type === 'inbound-rtp');
                 const outbound = [...report.values()].find((s) => s.type === 'outbound-rtp');
                 const source = [...report.values()].find((s) => s.type === 'media-source');
                 const codec = inbound && report.get(inbound.codecId);
                 return {
                   ...inbound,
                   codec: codec?.mimeType ?? '',
                   sent: outbound?.packetsSent ?? 0,
                   captured: source?.totalSamplesDuration ?? 0,
                 };
               }"""
        )
        await page.evaluate("() => window.call.hangup()")
        ended = await wait_event(page, "ended", timeout=10)
    assert stats["nonSilentSamplesReceived"] / 16000 >= 1.0, log
    assert heard >= 1.0, log
    assert rtp["codec"].lower() == "audio/opus" and rtp["packetsReceived"] > 100
    # Opus DTX: while the agent was silent (over a third of the call) only a DTX packet came every 400
    # ms, and Chromium played the silences as comfort noise, not as loss: hardly any concealment (it
    # would conceal a silence without packets), nothing discarded or buffered long (as a talkspurt
    # whose timestamp did not move on with the clock would be).
    assert rtp["packetsReceived"] < 0.8 * rtp["totalSamplesDuration"] * 50, rtp
    assert rtp["packetsDiscarded"] == 0, rtp
    assert rtp["silentConcealedSamples"] < 0.05 * rtp["totalSamplesReceived"], rtp
    assert rtp["jitterBufferDelay"] / rtp["jitterBufferEmittedCount"] < 0.5, rtp
    assert stats["nonSilentSamplesSent"] / 16000 >= 1.0  # the fake microphone's speech
    # The caller's DTX (callgate's answer asks for it): the microphone was silent for over two thirds
    # of the call (11 s before the sentence, then while the agent answered), and Chromium sent next to
    # nothing then. The turn still ended and was answered above: the listener counted the pause by the
    # clock while no audio came.
    assert rtp["captured"] > 10 and rtp["sent"] < 0.5 * rtp["captured"] * 50, rtp
    assert ended["reason"] == "caller_hangup" and ended["code"] == 1000

    body = await settled_call(live, team.auth(), str(call["id"]))
    assert body["status"] == "ended" and body["end_reason"] == "caller_hangup"
    assert body["transport"] == "webrtc"
    user = [t for t in body["transcript"] if t["role"] == "user"]
    assert user and all(w in user[0]["text"].lower() for w in ("appointment", "tomorrow"))
    answers = [t for t in body["transcript"] if t["role"] == "agent" and t["seq"] > user[0]["seq"]]
    assert answers and "tomorrow" in answers[0]["text"].lower()

    r = await live.world.client.get(f"/v1/calls/{call['id']}/recording", headers=team.auth())
    assert r.status_code == 200
    (tmp_path / "rec.wav").write_bytes(r.content)
    with wave.open(str(tmp_path / "rec.wav")) as w:
        stereo = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).reshape(-1, 2)
    assert nonsilent_seconds(np.ascontiguousarray(stereo[:, 0]), 16000) >= 1.0
    assert nonsilent_seconds(np.ascontiguousarray(stereo[:, 1]), 16000) >= 1.0


async def case_barge_in(child: LiveServer, tmp_path: Path) -> None:
    live = child
    # One breath, no sentence break: a pause inside it could end the caller's turn early and let the
    # agent answer inside the window the test watches.
    speech = make_speech_wav(
        "Hold on I need to talk to a real person at the front desk please", tmp_path / "s.wav", engine="piper"
    )
    # Talks over the greeting (the microphone opens before the offer is sent: joining takes ~1-3 s).
    mic = concat_wavs([5.0, speech, 8.0], tmp_path / "mic.wav")
    team = await live.world.team("acme")
    agent_id = await live.flow_agent(team)
    call = await live.web_call(team, agent_id, transport="webrtc")
    async with launch_chromium(fake_audio=mic) as browser:
        page = await new_page(browser)
        await join(page, live, call)
        cut = await wait_event(page, "interrupted", timeout=20)
        await asyncio.sleep(1.6)  # the caller is still talking: the agent has nothing new to say yet
        # The server hears the caller start (``user-speaking``) and holds the agent's audio at once;
        # the cut (``interrupted``) follows when the words, or 700 ms of speech, make it a real turn.
        onsets: list[float] = await page.evaluate(
            """(cut) => window.events
                 .filter((e) => e.name === 'user-speaking' && e.detail === true && e.t <= cut)
                 .map((e) => e.t)""",
            cut["t"],
        )
        assert onsets, "the caller's speech was never heard"
        onset = onsets[-1]
        before = await loud_seconds(page, onset - 1000, onset)
        on_the_wire = await loud_seconds(page, onset + 500, cut["t"] + 1500)
        heard_at_cut = await page.evaluate("() => window.heardAtCut")
        timeline = await page.evaluate("() => window.events.map((e) => [Math.round(e.t), e.name])")
        stats = await page.evaluate("() => window.call.stats")
        await page.evaluate("() => window.call.hangup()")
        await wait_event(page, "ended", timeout=10)
    assert before >= 0.3, timeline  # the agent was speaking when the caller cut in...
    assert on_the_wire == 0.0  # ...the server held it (Chrome's jitter buffer may hold ~0.3 s)...
    assert cut["t"] - onset < 3000
    assert stats["nonSilentSamplesReceived"] == heard_at_cut  # ...and the SDK played none of what was left
    assert stats["flushes"] >= 1

    body = await settled_call(live, team.auth(), str(call["id"]))
    greeting = body["transcript"][0]
    assert greeting["role"] == "agent" and greeting["interrupted"] is True


async def case_demo_page(child: LiveServer, tmp_path: Path) -> None:
    live = child
    seeded = await live.runtime.db.write(lambda s: bootstrap(s, now=utcnow(), max_live_calls=20))
    assert seeded.secret_key is not None
    auth = {"Authorization": f"Bearer {seeded.secret_key}"}
    speech = make_speech_wav(
        "I would like to book an appointment for tomorrow at three pm.", tmp_path / "s.wav", engine="piper"
    )
    mic = concat_wavs([11.0, speech, 20.0], tmp_path / "mic.wav")  # after the greeting
    log: list[str] = []
    async with launch_chromium(fake_audio=mic) as browser:
        page = await new_page(browser, log=log)
        await page.goto(live.url + "/")
        await page.get_by_label("Transport").select_option("webrtc")
        await page.get_by_role("button", name="Call").click()
        await page.wait_for_function(
            "() => window.demoCall && window.demoCall.state === 'connected'", timeout=15_000
        )
        assert await page.evaluate("() => window.demoCall.transport") == "webrtc"
        assert not await page.get_by_label("Transport").is_enabled()  # fixed for the call
        status = page.get_by_role("status")
        assert "webrtc" in (await status.text_content() or "")
        call_id: str = await page.evaluate("() => window.demoCall.id")

        transcript = page.locator("#transcript")
        said = transcript.locator("li.user:not(.interim)", has_text="appointment")
        await said.wait_for(timeout=40_000)
        await transcript.locator("li.agent", has_text="tomorrow").wait_for(timeout=30_000)
        await page.wait_for_function("() => !window.demoCall.agentSpeaking", timeout=30_000)
        await asyncio.sleep(0.5)  # the last words leave the jitter buffer
        stats = await page.evaluate("() => window.demoCall.stats")
        rtp = await page.evaluate(
            """async () => {
                 const report = await window.demoCall.getStats();
                 const inbound = [...report.values()].find((s) => s.type === 'inbound-rtp');
                 const codec = inbound && report.get(inbound.codecId);
                 return {packets: inbound?.packetsReceived ?? 0, codec: codec?.mimeType ?? ''};
               }"""
        )
        await page.evaluate("() => window.demoCall.sendDtmf('12#')")
        keyed = await _wait_turn(live, auth, call_id, "DTMF 12#")

        await page.get_by_role("button", name="Hang up").click()
        await page.wait_for_function(
            "() => document.getElementById('status').textContent.startsWith('Call ended')", timeout=10_000
        )
        assert await status.text_content() == "Call ended: caller_hangup (1000)."
        assert await page.get_by_label("Transport").is_enabled()

        # The same browser, then: the dashboard's Try it and the widget, each over WebRTC.
        team = await live.world.team("acme")
        agent_id = await live.flow_agent(team)
        tried = await try_it_over_webrtc(live, page, team, agent_id)
        widget_call = await widget_over_webrtc(live, page, team, agent_id)
    assert stats["nonSilentSamplesReceived"] / 16000 >= 1.0, log  # the agent was heard...
    assert rtp["codec"].lower() == "audio/opus" and rtp["packets"] > 100  # ...over Opus
    assert said is not None and keyed["role"] == "user"

    body = await settled_call(live, auth, call_id)
    assert body["transport"] == "webrtc" and body["end_reason"] == "caller_hangup"
    user = [t["text"] for t in body["transcript"] if t["role"] == "user"]
    assert "appointment" in user[0].lower() and "DTMF 12#" in user
    errors = [line for line in log if line.startswith("pageerror")]
    assert not errors, errors
    for call_id in (tried, widget_call):
        body = await settled_call(live, team.auth(), call_id)
        assert body["transport"] == "webrtc" and body["end_reason"] == "caller_hangup", body
        user = [t["text"] for t in body["transcript"] if t["role"] == "user"]
        assert user and "opening hours" in user[0].lower(), body["transcript"]


async def rtp_in(page: Page, call: str) -> dict[str, Any]:
    """What the browser's peer connection received: packets and codec of the agent's audio."""
    found: dict[str, Any] = await page.evaluate(
        f"""async () => {{
             const report = await {call}.getStats();
             const inbound = [...report.values()].find((s) => s.type === 'inbound-rtp');
             const codec = inbound && report.get(inbound.codecId);
             return {{packets: inbound?.packetsReceived ?? 0, codec: codec?.mimeType ?? ''}};
           }}"""
    )
    return found


async def try_it_over_webrtc(live: LiveServer, page: Page, team: Team, agent_id: str) -> str:
    """A member signs in and calls the agent from its page, voice and text over WebRTC: the agent is
    heard over Opus and a typed question is answered. The microphone is muted: the fake one's booking
    was for the demo call."""
    await make_user(live.runtime, team.id, "member@example.com", Role.MEMBER)
    await page.goto(f"{live.url}/dashboard/agents/{agent_id}")
    await page.fill("#email", "member@example.com")
    await page.fill("#password", PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_url(f"**/dashboard/agents/{agent_id}")
    await page.select_option("#try-mode", "audio_text")
    await page.select_option("#try-transport", "webrtc")
    await page.click("#try-start")
    await page.wait_for_function("() => window.dashboardCall?.state === 'connected'", timeout=15_000)
    await page.evaluate("() => window.dashboardCall.mute()")
    assert await page.evaluate("() => window.dashboardCall.transport") == "webrtc"
    await page.wait_for_selector("#try-transcript .turn.agent", timeout=20_000)
    await page.wait_for_function("() => !document.getElementById('try-input').disabled")
    await page.fill("#try-input", "What are your opening hours?")
    await page.click("#try-send")
    await page.wait_for_function(
        "() => [...document.querySelectorAll('#try-transcript .turn.agent')]"
        ".some(li => /open/i.test(li.textContent))",
        timeout=20_000,
    )
    await page.wait_for_function(
        "() => window.dashboardCall.stats.nonSilentSamplesReceived >= 16000", timeout=10_000
    )  # a second of the agent's voice (the answer's latency row: test_dashboard.py, over WebSocket)
    rtp = await rtp_in(page, "window.dashboardCall")
    call_id: str = await page.evaluate("() => document.getElementById('try').dataset.callId")
    await page.click("#try-hangup")
    await page.wait_for_function(
        "() => document.getElementById('try-status').textContent.startsWith('Ended')", timeout=10_000
    )
    assert rtp["codec"].lower() == "audio/opus" and rtp["packets"] >= 50  # the second heard, at least
    return call_id


WIDGET_PAGE = """<!doctype html><html lang="en"><meta charset="utf-8"><title>Acme Dental</title>
<h1>Acme Dental</h1>
<script src="{host}/widget.js" data-publishable-key="{key}" data-agent-id="{agent}"
  data-transport="webrtc" data-mode="audio_text" async></script>
"""


async def widget_over_webrtc(live: LiveServer, page: Page, team: Team, agent_id: str) -> str:
    """The widget with ``data-transport="webrtc"`` on another origin under a CSP that allows only
    callgate: a second of the agent's voice over Opus, a typed question answered, hung up by the
    keyboard while the answer plays."""
    ws = live.url.replace("http://", "ws://")
    policy = (
        f"default-src 'none'; script-src {live.url}; style-src {live.url}; "
        f"connect-src {live.url} {ws}; media-src {live.url}"
    )
    pages = {"/": ""}
    with serve_static(mounts={}, pages=pages, headers={"Content-Security-Policy": policy}) as origin:
        key = await team.key(KeyType.PUBLISHABLE, allowed_origins=[origin])
        pages["/"] = WIDGET_PAGE.format(host=live.url, key=key, agent=agent_id)
        await page.goto(f"{origin}/")
        call = "document.querySelector('[data-callgate-widget]').call"
        await page.get_by_role("button", name="Talk to us").click()
        hangup = page.get_by_role("button", name="Hang up")
        await expect(hangup).to_be_focused(timeout=20_000)
        await page.get_by_role("button", name="Mute").click()
        assert await page.evaluate(f"() => {call}.transport") == "webrtc"
        transcript = page.get_by_role("log", name="Transcript")
        await expect(transcript.locator(".turn.agent").first).to_be_visible(timeout=20_000)
        box = page.get_by_role("textbox", name="Type a message")
        await box.fill("What are your opening hours?")
        await box.press("Enter")
        await expect(transcript.locator(".turn.agent", has_text="open").first).to_be_visible(timeout=20_000)
        await page.wait_for_function(f"() => {call}.stats.nonSilentSamplesReceived >= 16000", timeout=10_000)
        rtp = await rtp_in(page, call)
        call_id: str = await page.evaluate(f"() => {call}.id")
        await hangup.focus()
        await page.keyboard.press("Enter")
        await expect(page.get_by_role("status")).to_have_text("Call ended.", timeout=15_000)
    assert rtp["codec"].lower() == "audio/opus" and rtp["packets"] >= 50  # the second heard, at least
    return call_id


async def _wait_turn(live: LiveServer, auth: dict[str, str], call_id: str, text: str) -> dict[str, Any]:
    for _ in range(200):
        body = (await live.world.client.get(f"/v1/calls/{call_id}", headers=auth)).json()
        found = [t for t in body["transcript"] if t["text"] == text]
        if found:
            turn: dict[str, Any] = found[0]
            return turn
        await asyncio.sleep(0.05)
    raise AssertionError(f"no turn {text!r} in {body['transcript']}")
