"""End to end in headless Chromium: the embeddable widget (``/widget.js``) on another website.

A second local HTTP server plays the customer's site: one page with the widget's script tag, a strict
``Content-Security-Policy`` header that allows scripts, styles and connections from callgate's origin
only (plus the site's own stylesheet, which tries its best to restyle every button and text on the
page), and a publishable key that lists the site's origin. The caller uses the keyboard alone; the fake
microphone speaks after the agent's greeting. A third origin, which the key does not list, is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Page, expect

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

pytestmark = [pytest.mark.e2e, pytest.mark.speech]

PAGE = """<!doctype html><html lang="en"><meta charset="utf-8"><title>Acme Dental</title>
<link rel="stylesheet" href="/assets/site.css">
<h1>Acme Dental</h1><p>Book by phone, or talk to our assistant.</p><button id="own">Our own button</button>
<script src="__HOST__/widget.js" data-publishable-key="__KEY__" data-agent-id="__AGENT__" async></script>
"""

# The site's own stylesheet, hostile on purpose: none of it may reach the widget's insides.
SITE_CSS = """
* { color: rgb(255, 0, 0) !important; font-family: serif !important; }
button { background: rgb(255, 0, 0) !important; border-radius: 0 !important; }
p, div, section { display: none !important; }
"""

# Collect CSP violations from before any page script runs (init scripts are not page scripts).
WATCH = """
window.violations = [];
document.addEventListener('securitypolicyviolation', (e) => {
  window.violations.push({directive: e.violatedDirective, blocked: e.blockedURI, sample: e.sample});
});
"""


CALL = "document.querySelector('[data-callgate-widget]').call"
"""The widget's live call (the SDK's Call object), as an integrator's script can reach it."""


AXE = REPO_ROOT / "node_modules" / "axe-core" / "axe.min.js"


async def serious_accessibility_violations(page: Page) -> list[dict[str, Any]]:
    """axe-core (npm) over the widget, shadow DOM included; the serious and critical findings.

    Evaluated through the DevTools protocol, which the page's CSP does not govern."""
    assert AXE.exists(), "JS packages missing: run `npm ci` (scripts/test.sh does)"
    await page.evaluate(AXE.read_text())
    found: list[dict[str, Any]] = await page.evaluate(
        """async () => {
             const result = await axe.run(document.querySelector('[data-callgate-widget]'));
             return result.violations
               .filter((v) => v.impact === 'serious' || v.impact === 'critical')
               .map((v) => ({id: v.id, impact: v.impact, nodes: v.nodes.map((n) => n.html)}));
           }"""
    )
    return found


def csp(host: str) -> str:
    ws = host.replace("http://", "ws://")
    return (
        f"default-src 'none'; script-src {host}; style-src 'self' {host}; connect-src {host} {ws}; "
        f"img-src {host}; media-src {host}; base-uri 'none'; form-action 'none'"
    )


@pytest.fixture(scope="module")
def microphone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("speech")
    speech = make_speech_wav(
        "I would like to book an appointment for tomorrow at three pm.", folder / "s.wav", engine="piper"
    )
    return concat_wavs([11.0, speech, 20.0], folder / "mic.wav")


@pytest.fixture
def site_assets(tmp_path: Path) -> Path:
    folder = tmp_path / "assets"
    folder.mkdir()
    (folder / "site.css").write_text(SITE_CSS)
    return folder


@contextlib.contextmanager
def customer_site(live: LiveServer, assets: Path, pages: dict[str, str]) -> Iterator[str]:
    """A site on its own origin, under the strict CSP; ``pages`` is read at each request."""
    policy = {"Content-Security-Policy": csp(live.url)}
    with serve_static(mounts={"/assets/": assets}, pages=pages, headers=policy) as origin:
        yield origin


@pytest.fixture
def pages() -> dict[str, str]:
    return {"/": ""}  # filled in by widget_page


@pytest.fixture
def site(live: LiveServer, site_assets: Path, pages: dict[str, str]) -> Iterator[str]:
    """The customer's site: its origin."""
    with customer_site(live, site_assets, pages) as origin:
        yield origin


@pytest.fixture
async def browser_page(microphone: Path) -> AsyncIterator[tuple[Page, list[str]]]:
    log: list[str] = []
    async with launch_chromium(fake_audio=microphone) as browser:
        page = await new_page(browser, log=log)
        await page.add_init_script(WATCH)
        try:
            yield page, log
        finally:
            print("\n".join(log[-100:]))


async def widget_page(
    live: LiveServer, page: Page, origin: str, pages: dict[str, str], *, key: str, agent: str
) -> None:
    pages["/"] = PAGE.replace("__HOST__", live.url).replace("__KEY__", key).replace("__AGENT__", agent)
    await page.goto(f"{origin}/")
    await expect(page.get_by_role("button", name="Talk to us")).to_be_visible()


async def test_widget_call_on_another_site_under_a_strict_csp(
    live: LiveServer, site: str, pages: dict[str, str], browser_page: tuple[Page, list[str]]
) -> None:
    page, log = browser_page
    assert all(w.ok for w in await asyncio.to_thread(live.runtime.engines.warm_up))
    team = await live.world.team("acme")
    agent_id = await live.flow_agent(team)
    key = await team.key(KeyType.PUBLISHABLE, allowed_origins=[site])
    await widget_page(live, page, site, pages, key=key, agent=agent_id)

    # Nothing of the widget outside its one shadow host; the page's CSS does not get in.
    light = await page.evaluate(
        """() => ({
             hosts: document.querySelectorAll('[data-callgate-widget]').length,
             bodyChildren: [...document.body.children].map((e) => e.tagName),
             sheets: document.styleSheets.length, adopted: document.adoptedStyleSheets.length,
             styled: document.querySelectorAll('[style]').length,
           })"""
    )
    assert light == {
        "hosts": 1,
        "bodyChildren": ["H1", "P", "BUTTON", "SCRIPT", "DIV"],
        "sheets": 1,
        "adopted": 0,
        "styled": 0,
    }
    launcher = page.get_by_role("button", name="Talk to us")
    looks = await launcher.evaluate(
        "(b) => { const s = getComputedStyle(b); return [s.backgroundColor, s.color, s.fontFamily]; }"
    )
    assert looks[0] == "rgb(11, 107, 203)" and looks[1] == "rgb(255, 255, 255)"  # the widget's styles apply
    assert looks[2].strip() != "serif"

    # Keyboard only: Tab from the page's own button to the widget's, Enter to call.
    await page.locator("#own").focus()
    await page.keyboard.press("Tab")
    assert await launcher.evaluate("(b) => b.getRootNode().activeElement === b")
    await page.keyboard.press("Enter")
    await expect(launcher).to_have_attribute("aria-expanded", "true")
    hangup = page.get_by_role("button", name="Hang up")
    await expect(hangup).to_be_focused(timeout=20_000)  # connected: focus moves into the panel
    log_region = page.get_by_role("log", name="Transcript")
    await expect(log_region).to_be_visible()

    await expect(log_region.locator(".turn.agent").first).to_contain_text("Maple Street", timeout=20_000)
    assert await serious_accessibility_violations(page) == []
    await expect(log_region.locator(".turn.user").first).to_contain_text("appointment", timeout=40_000)
    await expect(log_region.locator(".turn.agent", has_text="tomorrow").first).to_be_visible(timeout=30_000)
    stats: dict[str, Any] = await page.evaluate(
        "() => document.querySelector('[data-callgate-widget]').call.stats"
    )
    assert stats["nonSilentSamplesReceived"] > 16000 * 2  # greeting and answer: seconds of agent audio
    await page.wait_for_function(f"() => {CALL}.stats.samplesPlayed > 32000")

    # Mute and the text box, by keyboard.
    mute = page.get_by_role("button", name="Mute")
    await mute.focus()
    await page.keyboard.press("Space")
    await expect(page.get_by_role("button", name="Unmute")).to_have_attribute("aria-pressed", "true")
    assert await page.evaluate(f"() => {CALL}.muted")
    await page.get_by_role("button", name="Unmute").press("Enter")
    await expect(page.get_by_role("button", name="Mute")).to_have_attribute("aria-pressed", "false")
    box = page.get_by_role("textbox", name="Type a message")
    await box.fill("Thank you")
    await box.press("Enter")
    await expect(log_region.locator(".turn.user", has_text="Thank you")).to_be_visible()

    # Hang up with the keyboard; focus returns to the call button.
    await hangup.focus()
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("status")).to_have_text("Call ended.", timeout=15_000)
    assert await launcher.evaluate("(b) => b.getRootNode().activeElement === b")

    violations = await page.evaluate("() => window.violations")
    assert violations == [], violations
    # The policy is live: what the widget avoids (an inline style in the page) is refused and reported.
    await page.evaluate(
        "() => document.head.append(Object.assign(document.createElement('style'), {textContent: 'p{}'}))"
    )
    await page.wait_for_function("() => window.violations.some((v) => v.directive.startsWith('style-src'))")
    assert not [line for line in log if line.startswith("pageerror")], log
    calls = (await live.world.client.get("/v1/calls", headers=team.auth())).json()["data"]
    assert len(calls) == 1
    body = await settled_call(live, team.auth(), calls[0]["id"])
    assert body["end_reason"] == "caller_hangup"
    assert any("appointment" in t["text"].lower() for t in body["transcript"] if t["role"] == "user")


async def test_widget_on_a_site_the_key_does_not_allow(
    live: LiveServer,
    site: str,
    site_assets: Path,
    pages: dict[str, str],
    browser_page: tuple[Page, list[str]],
) -> None:
    page, _ = browser_page
    team = await live.world.team("acme")
    agent_id = await live.flow_agent(team)
    key = await team.key(KeyType.PUBLISHABLE, allowed_origins=[site])  # not the other site's origin
    with customer_site(live, site_assets, pages) as other:
        await widget_page(live, page, other, pages, key=key, agent=agent_id)
        await page.get_by_role("button", name="Talk to us").click()
        await expect(page.get_by_role("status")).to_have_text("Calls are not available on this website.")
    calls = (await live.world.client.get("/v1/calls", headers=team.auth())).json()["data"]
    assert calls == []  # refused at the preflight: no call was created
    # The same key from the allowed origin is accepted, and from the other refused, by the API itself.
    for origin, status in ((site, 201), (other, 403)):
        r = await live.world.client.post(
            "/v1/web-calls/token",
            json={"agent_id": agent_id},
            headers={"Authorization": f"Bearer {key}", "Origin": origin},
        )
        assert r.status_code == status, r.text


async def test_widget_script_is_served_for_other_sites(live: LiveServer) -> None:
    r = await live.world.client.get("/widget.js")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/javascript")
    assert r.headers["access-control-allow-origin"] == "*"
    assert r.headers["cross-origin-resource-policy"] == "cross-origin"
    for asset in ("/static/callgate.js", "/static/audio.js", "/static/worklets/capture.js"):
        r = await live.world.client.get(asset, headers={"Origin": "https://shop.example"})
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "*", asset
