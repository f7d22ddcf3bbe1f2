"""End to end in headless Chromium: real softphone libraries (JsSIP, SIP.js) call the agent over SIP.

Each library is bundled for the browser with esbuild during the test (no bundle is committed). The page
registers with the credentials of a web call created through the API, calls ``target`` with the
required headers, hears the agent (an AnalyserNode on the remote track measures non-silent audio) and
speaks through the fake microphone (a WAV made with piper); the transcript, DTMF and the end reason are
checked through the API.

WebRTC needs a loopback-only network: the browser tests run in their own network namespace
(``unshare -n`` with ``lo`` up), where Chromium offers only 127.0.0.1 and aioice is told to use it. The
one test that runs in the normal suite, :func:`test_softphones_in_a_loopback_namespace`, re-runs this
module there and requires every browser test to pass.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Page

from tests.support.browser import (
    RAW_MICROPHONE,
    REPO_ROOT,
    concat_wavs,
    launch_chromium,
    make_speech_wav,
    new_page,
    serve_static,
)
from tests.support.live import LiveServer
from tests.support.webrtc_client import loopback_ice

pytestmark = [pytest.mark.e2e, pytest.mark.speech]

NETNS_ENV = "CALLGATE_E2E_LOOPBACK_NETNS"
INSIDE = os.environ.get(NETNS_ENV) == "1"
inside_only = pytest.mark.skipif(not INSIDE, reason="runs in a loopback-only namespace (see the module doc)")

BUNDLES = {
    "jssip.js": "window.JsSIP = require('jssip');",
    "sipjs.js": "import * as SIP from 'sip.js'; window.SIP = SIP;",
}

PAGE = """<!doctype html><meta charset="utf-8"><title>softphone</title>
<script src="/js/jssip.js"></script><script src="/js/sipjs.js"></script>
<script>
window.RAW = __RAW__;
window.heard = {seconds: 0, frames: 0};
window.ended = null;
window.measure = (stream) => {
  // Chrome feeds a remote track to Web Audio only while a media element plays it unmuted.
  const sink = new Audio(); sink.srcObject = stream; sink.play().catch(() => {});
  const ctx = new AudioContext();
  const analyser = ctx.createAnalyser(); analyser.fftSize = 1024;
  ctx.createMediaStreamSource(stream).connect(analyser);
  const buf = new Float32Array(analyser.fftSize);
  setInterval(() => {
    analyser.getFloatTimeDomainData(buf);
    let sum = 0; for (const v of buf) sum += v * v;
    window.heard.frames += 1;
    if (Math.sqrt(sum / buf.length) > 0.01) window.heard.seconds += 0.02;
  }, 20);
};
window.headerLines = (headers) => Object.entries(headers).map(([k, v]) => `${k}: ${v}`);

window.jssipCall = async ({wsUrl, uri, password, target, headers}) => {
  JsSIP.debug.disable('JsSIP:*');
  const ua = new JsSIP.UA({sockets: [new JsSIP.WebSocketInterface(wsUrl)], uri, password, register: true});
  window.ua = ua;
  const registered = new Promise((resolve, reject) => {
    ua.on('registered', resolve);
    ua.on('registrationFailed', (e) => reject(new Error('registration failed: ' + e.cause)));
  });
  ua.start();
  await registered;
  const session = ua.call(target, {
    mediaConstraints: {audio: window.RAW, video: false}, pcConfig: {iceServers: []},
    extraHeaders: window.headerLines(headers),
  });
  window.session = session;
  session.connection.addEventListener('track', (e) => window.measure(new MediaStream([e.track])));
  session.on('ended', (e) => { window.ended = {originator: e.originator, cause: e.cause}; });
  await new Promise((resolve, reject) => {
    session.on('confirmed', resolve);
    session.on('failed', (e) => reject(new Error('call failed: ' + e.cause)));
  });
  window.dtmf = (key, transport) => session.sendDTMF(key, {transportType: transport});
  window.hangup = () => session.terminate();
  // Hold by re-INVITE, resume by UPDATE with an offer: both re-offer paths of the server.
  window.hold = (on) => new Promise((resolve, reject) => {
    const sent = on ? session.hold({}, resolve) : session.unhold({useUpdate: true}, resolve);
    if (!sent) reject(new Error('JsSIP refused to re-offer'));
    session.on('ended', () => reject(new Error('the call ended')));
  });
};

window.sipjsCall = async ({wsUrl, uri, username, password, target, headers}) => {
  const ua = new SIP.UserAgent({
    uri: SIP.UserAgent.makeURI(uri), transportOptions: {server: wsUrl}, logLevel: 'error',
    authorizationUsername: username, authorizationPassword: password,
    sessionDescriptionHandlerFactoryOptions: {peerConnectionConfiguration: {iceServers: []}},
  });
  window.ua = ua;
  await ua.start();
  const registerer = new SIP.Registerer(ua);
  await new Promise((resolve, reject) => {
    registerer.stateChange.addListener((s) => { if (s === SIP.RegistererState.Registered) resolve(); });
    registerer.register({requestDelegate: {
      onReject: (r) => reject(new Error('registration failed: ' + r.message.statusCode)),
    }}).catch(reject);
  });
  const inviter = new SIP.Inviter(ua, SIP.UserAgent.makeURI(target), {
    extraHeaders: window.headerLines(headers),
    sessionDescriptionHandlerOptions: {constraints: {audio: window.RAW, video: false}},
  });
  window.session = inviter;
  await new Promise((resolve, reject) => {
    inviter.stateChange.addListener((state) => {
      if (state === SIP.SessionState.Established) {
        const pc = inviter.sessionDescriptionHandler.peerConnection;
        pc.getReceivers().forEach((r) => window.measure(new MediaStream([r.track])));
        resolve();
      } else if (state === SIP.SessionState.Terminated) {
        window.ended = window.ended || {originator: 'remote'};
        reject(new Error('call terminated'));
      }
    });
    inviter.invite({requestDelegate: {
      onReject: (r) => reject(new Error('call rejected: ' + r.message.statusCode)),
    }}).catch(reject);
  });
  window.dtmf = (key, transport) => transport === 'RFC2833'
    ? inviter.sessionDescriptionHandler.sendDtmf(key)
    : inviter.info({requestOptions: {body: {
        contentDisposition: 'render', contentType: 'application/dtmf-relay',
        content: `Signal=${key}\\r\\nDuration=160`}}});
  window.hangup = () => { window.ended = {originator: 'local'}; return inviter.bye(); };
  window.hold = (on) => new Promise((resolve, reject) => {
    inviter.invite({
      sessionDescriptionHandlerModifiers: on ? [SIP.Web.holdModifier] : [],
      requestDelegate: {
        onAccept: resolve, onReject: (r) => reject(new Error('re-INVITE ' + r.message.statusCode)),
      },
    }).catch(reject);
  });
};
</script>
""".replace("__RAW__", json.dumps(RAW_MICROPHONE))


# ------------------------------------------------------------------------ the namespace wrapper


@pytest.mark.skipif(INSIDE, reason="this is the wrapper; the browser tests run here")
def test_softphones_in_a_loopback_namespace() -> None:
    script = 'ip link set lo up && exec "$@"'
    command = [
        "unshare", "-n", "sh", "-c", script, "sh", sys.executable, "-m", "pytest", __file__,
        "-k", "not loopback_namespace", "-p", "no:cacheprovider", "-q", "-W", "error",
    ]  # fmt: skip
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
def bundles(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """JsSIP and SIP.js bundled for the browser with esbuild, from the npm packages in node_modules."""
    esbuild = REPO_ROOT / "node_modules" / ".bin" / "esbuild"
    assert esbuild.exists(), "JS packages missing: run `npm ci` (scripts/test.sh does)"
    out = tmp_path_factory.mktemp("js")
    for name, entry in BUNDLES.items():
        # From stdin, esbuild resolves imports from its working directory: the repository root.
        built = subprocess.run(
            [str(esbuild), "--bundle", "--format=iife", f"--outfile={out / name}", f"--sourcefile={name}"],
            input=entry, text=True, capture_output=True, cwd=REPO_ROOT,
        )  # fmt: skip
        assert built.returncode == 0, built.stderr
    return out


@pytest.fixture
def page_url(bundles: Path) -> Iterator[str]:
    with serve_static(mounts={"/js/": bundles}, pages={"/sip.html": PAGE}) as base:
        yield f"{base}/sip.html"


@pytest.fixture(autouse=True)
def _loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    loopback_ice(monkeypatch)


@pytest.fixture(scope="module")
def speech_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("speech")


def microphone(speech_dir: Path, text: str | None, *, lead_s: float = 11.0) -> Path:
    """The fake microphone: silence through the greeting, then ``text`` (or silence only)."""
    if text is None:
        return concat_wavs([2.0], speech_dir / "silence.wav")
    speech = make_speech_wav(text, speech_dir / "speech.wav", engine="piper")
    return concat_wavs([lead_s, speech, 20.0], speech_dir / "mic.wav")


@pytest.fixture
async def browser_page(
    request: pytest.FixtureRequest, page_url: str, speech_dir: Path
) -> AsyncIterator[Page]:
    text = getattr(request, "param", None)
    log: list[str] = []
    async with launch_chromium(fake_audio=microphone(speech_dir, text)) as browser:
        page = await new_page(browser, log=log)
        await page.goto(page_url)
        yield page
        print("\n".join(log))


# ------------------------------------------------------------------------ helpers


async def sip_credentials(live: LiveServer, *, via: str) -> tuple[dict[str, Any], dict[str, str], str]:
    """A web call for the demo agent: (SIP details, the team's auth header, call id).

    The speech models are loaded first, so the greeting starts as soon as the call connects and the
    fake microphone's speech (scripted to start after the greeting) does not talk over it.
    """
    assert all(w.ok for w in await asyncio.to_thread(live.runtime.engines.warm_up))
    team = await live.world.team("acme")
    agent_id = await live.flow_agent(team)
    if via == "native":
        body = await live.web_call(team, agent_id, transport="sip")
        return dict(body["sip"]), team.auth(), str(body["id"])  # type: ignore[call-overload]
    r = await live.world.client.post(
        "/dialects/voxworks/api/v1/create-web-call", json={"script_id": agent_id}, headers=team.auth()
    )
    assert r.status_code in (200, 201), r.text
    body = r.json()
    keys = ("ws_url", "sip_domain", "sip_username", "sip_password", "target", "headers")
    return {k: body[k] for k in keys}, team.auth(), str(body["call_id"])


def call_args(sip: dict[str, Any]) -> dict[str, Any]:
    return {
        "wsUrl": sip["ws_url"],
        "uri": f"sip:{sip['sip_username']}@{sip['sip_domain']}",
        "username": sip["sip_username"],
        "password": sip["sip_password"],
        "target": sip["target"],
        "headers": sip["headers"],
    }


async def call_body(live: LiveServer, auth: dict[str, str], call_id: str) -> dict[str, Any]:
    body: dict[str, Any] = (await live.world.client.get(f"/v1/calls/{call_id}", headers=auth)).json()
    return body


async def wait_for(
    live: LiveServer, auth: dict[str, str], call_id: str, check: Any, *, timeout: float = 40
) -> dict[str, Any]:
    body: dict[str, Any] = {}
    for _ in range(int(timeout * 10)):
        body = await call_body(live, auth, call_id)
        if check(body):
            return body
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out; last state: {body}")


def user_turns(body: dict[str, Any]) -> list[str]:
    return [t["text"] for t in body.get("transcript") or [] if t["role"] == "user"]


async def heard_seconds(page: Page) -> float:
    seconds: float = await page.evaluate("() => window.heard.seconds")
    return seconds


# ------------------------------------------------------------------------ the browser tests

SPEECH = "I would like to book an appointment for tomorrow at three pm."


@inside_only
@pytest.mark.parametrize("browser_page", [SPEECH], indirect=True)
@pytest.mark.parametrize(
    ("library", "via"), [("jssip", "native"), ("jssip", "voxworks"), ("sipjs", "native")]
)
async def test_softphone_talks_to_the_agent_and_hangs_up(
    live: LiveServer, browser_page: Page, library: str, via: str
) -> None:
    page = browser_page
    sip, auth, call_id = await sip_credentials(live, via=via)
    await page.evaluate(f"(args) => window.{library}Call(args)", call_args(sip))
    assert (await call_body(live, auth, call_id))["status"] in ("connecting", "in_progress")
    await page.wait_for_function("() => window.heard.seconds >= 1.0", timeout=30_000)

    body = await wait_for(
        live, auth, call_id, lambda b: any("appointment" in t.lower() for t in user_turns(b))
    )
    assert any("tomorrow" in t.lower() for t in user_turns(body))

    await page.evaluate("() => window.dtmf('5', 'RFC2833')")  # RFC 4733, through the media
    await asyncio.sleep(0.5)
    await page.evaluate("() => window.dtmf('#', 'INFO')")  # SIP INFO application/dtmf-relay
    body = await wait_for(live, auth, call_id, lambda b: "DTMF 5#" in user_turns(b), timeout=15)

    await page.evaluate("() => window.hangup()")
    body = await wait_for(live, auth, call_id, lambda b: b["status"] in ("ended", "failed"), timeout=15)
    assert body["end_reason"] == "caller_hangup", body
    assert await heard_seconds(page) >= 1.0


@inside_only
@pytest.mark.parametrize("library", ["jssip", "sipjs"])
async def test_hold_resume_then_the_api_ends_the_call_with_bye(
    live: LiveServer, browser_page: Page, library: str
) -> None:
    page = browser_page
    sip, auth, call_id = await sip_credentials(live, via="native")
    await page.evaluate(f"(args) => window.{library}Call(args)", call_args(sip))
    await page.wait_for_function("() => window.heard.seconds >= 1.0", timeout=30_000)
    await page.evaluate("() => window.hold(true)")
    await page.evaluate("() => window.hold(false)")
    assert (await call_body(live, auth, call_id))["status"] == "in_progress"
    r = await live.world.client.post(f"/v1/calls/{call_id}/end", headers=auth)
    assert r.status_code in (200, 202), r.text
    await page.wait_for_function("() => window.ended !== null", timeout=10_000)
    ended = await page.evaluate("() => window.ended")
    assert ended["originator"] == "remote"
    if library == "jssip":
        assert ended["cause"] == "Terminated"  # JsSIP's cause for a BYE from the other side
    body = await wait_for(live, auth, call_id, lambda b: b["status"] in ("ended", "failed"), timeout=10)
    assert body["end_reason"] == "api_request"


@inside_only
async def test_wrong_password_fails_registration_in_jssip(live: LiveServer, browser_page: Page) -> None:
    sip, auth, call_id = await sip_credentials(live, via="native")
    args = {**call_args(sip), "password": "not-the-password"}
    with pytest.raises(Exception, match="registration failed: Authentication Error"):
        await browser_page.evaluate("(args) => window.jssipCall(args)", args)
    assert (await call_body(live, auth, call_id))["status"] == "created"


INSIDE_TESTS = 6
"""How many browser tests run in the namespace (the wrapper checks that all of them passed)."""
