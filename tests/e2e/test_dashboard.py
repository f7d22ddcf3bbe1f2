"""The dashboard end to end in real headless Chromium against a real server, with data made by real
calls: a text call from the agent page's "Try it", a voice call through the SDK (for the recording and
the latency chart), and hostile names, transcripts and metadata that must come out escaped. Every page
is checked with axe-core (no serious or critical violations) and screenshotted (paths printed), the
carrier and phone-number forms and a 404 page included."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Page

from callgate.config import Settings
from callgate.domain.users import Role
from tests.support.browser import concat_wavs, launch_chromium, make_speech_wav, new_page
from tests.support.dashboard import make_user
from tests.support.live import LiveServer, settled_call
from tests.support.receiver import Receiver
from tests.support.world import make_settings

pytestmark = [pytest.mark.e2e, pytest.mark.speech]

AXE = Path(__file__).resolve().parents[2] / "node_modules" / "axe-core" / "axe.min.js"
HOSTILE = '<img src=x onerror="window.xss=1">'

VOICE = """
async ({url}) => {
  const sdk = await import('/static/callgate.js');
  window.ended = null;
  const call = await sdk.connect({url, mode: 'audio',
    microphone: {echoCancellation: false, noiseSuppression: false, autoGainControl: false},
    onEvent: (name, detail) => { if (name === 'ended') window.ended = detail; }});
  window.call = call;
}
"""


@pytest.fixture
def live_settings(tmp_path: Path, sqlite_template: Path) -> Settings:
    path = tmp_path / "callgate.db"
    path.write_bytes(sqlite_template.read_bytes())
    return make_settings(
        tmp_path, f"sqlite+aiosqlite:///{path}", public_url=None, webhooks_allow_private=True
    )


async def check_page(page: Page, name: str, shots: Path) -> None:
    """axe-core finds no serious or critical violation; a screenshot is kept; no script ran from data."""
    await page.evaluate(AXE.read_text() + "\n;0")  # through DevTools: the page's CSP does not apply
    result: dict[str, Any] = await page.evaluate("() => axe.run(document, {resultTypes: ['violations']})")
    bad = [
        (v["id"], v["impact"], [n["target"] for n in v["nodes"]][:3])
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]
    shot = shots / f"{name}.png"
    await page.screenshot(path=str(shot), full_page=True)
    print(f"screenshot: {shot}")
    assert not bad, (name, bad)
    assert await page.evaluate("() => window.xss === undefined"), name


async def test_dashboard_pages_with_real_calls(live: LiveServer, receiver: Receiver, tmp_path: Path) -> None:
    shots = tmp_path / "screenshots"
    shots.mkdir()
    team = await live.world.team("acme")
    await make_user(live.runtime, team.id, "owner@example.com", Role.OWNER)
    agent_id = await live.flow_agent(team, name=HOSTILE)
    r = await live.world.client.post("/v1/webhook-endpoints", json={"url": receiver.url}, headers=team.auth())
    assert r.status_code == 201, r.text
    # A voice call through the SDK: the recording, the waveform and per-turn latency.
    speech = make_speech_wav("What are your opening hours?", tmp_path / "s.wav")
    mic = concat_wavs([11.0, speech, 12.0], tmp_path / "mic.wav")
    voice = await live.web_call(team, agent_id, metadata={"note": "<script>window.xss=1</script>"})
    async with launch_chromium(fake_audio=mic) as browser:
        page = await new_page(browser)
        await page.goto(live.url + "/")
        await page.evaluate(VOICE, {"url": voice["websocket_url"]})
        await asyncio.sleep(24)
        await page.evaluate("() => window.call.hangup()")
        await page.wait_for_function("() => window.ended !== null", timeout=15000)
    voiced = await settled_call(live, team.auth(), str(voice["id"]))
    assert voiced["recording_url"], voiced

    log: list[str] = []
    async with launch_chromium() as browser:
        page = await new_page(browser, log=log)
        # Sign in (redirected from a deep link, back to it after).
        await page.goto(live.url + "/dashboard/calls")
        assert "/dashboard/login" in page.url
        await page.fill("#email", "owner@example.com")
        await page.fill("#password", "not the password")
        await page.click("button[type=submit]")
        await page.wait_for_selector("#signin-error")
        await check_page(page, "login-error", shots)
        await page.fill("#password", "correct horse battery")
        await page.click("button[type=submit]")
        await page.wait_for_url("**/dashboard/calls")

        # Try it: a text call from the agent page, with a live transcript.
        await page.goto(f"{live.url}/dashboard/agents/{agent_id}")
        await page.select_option("#try-mode", "text")
        await page.click("#try-start")
        await page.wait_for_selector("#try-transcript .turn.agent", timeout=20000)
        await page.wait_for_function("() => !document.getElementById('try-input').disabled")
        await page.fill("#try-input", "What are your opening hours? " + HOSTILE)
        await page.click("#try-send")
        await page.wait_for_function(
            "() => [...document.querySelectorAll('#try-transcript .turn.agent')]"
            ".some(li => /open/i.test(li.textContent))",
            timeout=20000,
        )
        await page.wait_for_selector("#try-latency tbody tr", timeout=20000)  # the answer's latency
        text_call = await page.evaluate("() => document.getElementById('try').dataset.callId")
        await check_page(page, "agent-try", shots)
        await page.click("#try-hangup")
        await page.wait_for_function(
            "() => document.getElementById('try-status').textContent.startsWith('Ended')"
        )
        await settled_call(live, team.auth(), text_call)

        # Calls: a filter narrows the list.
        await page.goto(live.url + "/dashboard/calls")
        everything = await page.locator("#calls tbody tr").count()
        assert everything >= 2
        await check_page(page, "calls", shots)
        await page.fill("#q", "opening hours")
        await page.select_option("#kind", "web")
        await page.click(".filters button[type=submit]")
        await page.wait_for_url("**q=opening*")
        both = await page.locator("#calls tbody tr").count()
        await page.goto(live.url + "/dashboard/calls?status=ended&q=" + "%3Cimg")
        assert await page.locator("#calls tbody tr a").count() == 1  # only the typed hostile text
        assert both >= 2 and everything >= both

        # The voice call's page: waveform, latency chart, the recording plays, a replay is queued.
        await page.goto(f"{live.url}/dashboard/calls/{voice['id']}")
        await page.wait_for_function("() => Number(document.getElementById('waveform').dataset.drawn) > 0")
        assert await page.locator("#latency-chart rect").count() >= 4
        assert HOSTILE in await page.locator("dd a").first.inner_text()
        assert "<script>window.xss=1</script>" in await page.locator("#metadata").inner_text()
        await page.locator(".play-turn").last.click()
        await page.wait_for_function(
            "() => { const a = document.getElementById('recording');"
            " return !a.paused && a.currentTime > 0.05; }",
            timeout=10000,
        )
        await check_page(page, "call", shots)
        await page.click("#deliveries button[type=submit]")
        await page.wait_for_selector("#replayed")
        assert not (await page.locator("#replayed").inner_text()).startswith("0 ")

        # A carrier and a phone number, made with their forms; the stored password shows as ********.
        await page.goto(live.url + "/dashboard/carriers/new")
        await check_page(page, "carrier-new", shots)
        await page.fill("#f-name", "Trunk " + HOSTILE)
        await page.fill("#f-outbound_host", "sip.example.com")
        await page.fill("#f-outbound_password", "out-secret-1")
        await page.click("form button.primary")
        await page.wait_for_url("**/dashboard/carriers/*?saved=1")
        assert await page.input_value("#f-outbound_password") == "********"
        assert "out-secret-1" not in await page.content()
        await check_page(page, "carrier", shots)
        await page.goto(live.url + "/dashboard/numbers")
        await page.fill("#f-number", "+14155550123")
        await page.select_option("#f-agent_id", agent_id)
        await page.select_option("#f-carrier_id", label="Trunk " + HOSTILE)
        await page.click("form[action$='/numbers'] button.primary")
        await page.wait_for_url("**/dashboard/numbers?saved=1")
        assert await page.locator("#numbers tbody tr").count() == 1
        # Another team's (or no) object: a 404 page in the dashboard's layout.
        response = await page.goto(live.url + "/dashboard/calls/call_of_another_team")
        assert response is not None and response.status == 404
        await check_page(page, "not-found", shots)

        for name in ("", "/agents", "/live", "/numbers", "/webhooks", "/keys", "/users", "/agents/new"):
            await page.goto(f"{live.url}/dashboard{name}")
            await check_page(page, name.strip("/").replace("/", "-") or "overview", shots)
        await page.goto(live.url + "/dashboard")
        assert await page.locator("svg.chart rect").count() >= 1

        # A field error is shown at the field.
        await page.goto(live.url + "/dashboard/agents/new")
        await page.fill("#f-name", "x")
        await page.fill("#f-variables", "{not json")
        await page.fill("#f-tools", '[{"type": "http", "name": "x", "description": "d", "url": "nope"}]')
        await page.click("form button.primary")
        await page.wait_for_selector("#e-variables")
        assert await page.get_attribute("#f-variables", "aria-invalid") == "true"
        await page.fill("#f-variables", "")
        await page.fill("#f-prompt", "You answer questions.")
        await page.click("form button.primary")
        await page.wait_for_selector("#e-tools")
        assert (await page.inner_text("#e-tools")).startswith("tools[0].url:")
        await check_page(page, "agent-errors", shots)
    assert not [line for line in log if "pageerror" in line], log
