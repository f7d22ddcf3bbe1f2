"""A client tool in real headless Chromium: the agent (a prompt on the fake OpenAI-compatible LLM) calls
``fill_form``, the SDK runs the page's handler (``call.registerTool``), and the result reaches the model."""

from __future__ import annotations

import json

import pytest

from tests.support.browser import launch_chromium, new_page, wait_event
from tests.support.fake_openai import FakeOpenAI, Reply, text_events, tool_events
from tests.support.live import LiveServer, settled_call

pytestmark = [pytest.mark.e2e]

JOIN_WITH_TOOL = """
async ({url}) => {
  document.body.insertAdjacentHTML('beforeend', '<form id="signup"><input name="email"></form>');
  const sdk = await import('/static/callgate.js');
  window.events = [];
  const call = await sdk.connect({
    url, mode: 'text', microphone: false,
    onEvent: (name, detail) => window.events.push({name, detail, t: performance.now()}),
  });
  call.registerTool('fill_form', async ({email}) => {
    document.querySelector('#signup [name=email]').value = email;
    return {filled: true, email};
  });
  call.registerTool('broken', () => { throw new Error('the form is gone'); });
  window.call = call;
  return call.id;
}
"""


async def test_client_tool_fills_a_form_on_the_page(live: LiveServer, fake_openai: FakeOpenAI) -> None:
    team = await live.world.team("acme")
    tools = [
        {"type": "client", "name": name, "description": f"{name} on the page.",
         "parameters": {"type": "object", "properties": {"email": {"type": "string"}}}}
        for name in ("fill_form", "broken")
    ]  # fmt: skip
    body = {
        "name": "signup",
        "prompt": "You help people sign up.",
        "llm": {"engine": "openai", "base_url": fake_openai.base_url, "model": "fake-model"},
        "tools": tools,
    }
    r = await live.world.client.post("/v1/agents", json=body, headers=team.auth())
    assert r.status_code == 201, r.text
    fake_openai.replies += [
        Reply(events=tool_events("fill_form", '{"email": "ann@example.com"}', call_id="call_fill")),
        Reply(events=text_events("I filled in your email.")),
        Reply(events=tool_events("broken", "{}", call_id="call_broken")),
        Reply(events=text_events("That did not work.")),
    ]
    call = await live.web_call(team, r.json()["id"], mode="text")
    async with launch_chromium() as browser:
        page = await new_page(browser)
        await page.goto(live.url + "/")
        await page.evaluate(JOIN_WITH_TOOL, {"url": call["websocket_url"]})
        await page.evaluate("() => window.call.sendText('Sign me up with ann@example.com')")
        await wait_event(
            page, "transcript", timeout=20, where="d => d.role === 'agent' && /filled/.test(d.text)"
        )
        value = await page.evaluate("() => document.querySelector('#signup [name=email]').value")
        await page.evaluate("() => window.call.sendText('Try the other thing')")
        await wait_event(
            page, "transcript", timeout=20, where="d => d.role === 'agent' && /not work/.test(d.text)"
        )
        await page.evaluate("() => window.call.hangup()")
        await wait_event(page, "ended", timeout=10)
    assert value == "ann@example.com"
    result = next(m for m in fake_openai.requests[1]["messages"] if m["role"] == "tool")
    assert result["tool_call_id"] == "call_fill"
    assert json.loads(result["content"]) == {"filled": True, "email": "ann@example.com"}
    error = [m for m in fake_openai.requests[3]["messages"] if m["role"] == "tool"][-1]
    assert json.loads(error["content"]) == {"error": "the caller's app failed: the form is gone"}
    stored = await settled_call(live, team.auth(), str(call["id"]))
    assert [t["tool"]["name"] for t in stored["transcript"] if t["role"] == "tool"] == ["fill_form", "broken"]
