"""A provider switch in a live call: a prompt agent's LLM (the fake OpenAI-compatible server) answers the
first turn, then fails with a 500; the call goes on with its fallback (the fake Anthropic Messages API),
the call keeps the switch as an event, and the agent's webhook gets ``call.provider_switched``."""

from __future__ import annotations

import time

from callgate.domain import calls
from tests.realtime.websocket.test_websocket_tools import live_settings  # noqa: F401 - loopback allowed
from tests.support.fake_anthropic import KEY, FakeAnthropic
from tests.support.fake_anthropic import Reply as ClaudeReply
from tests.support.fake_anthropic import text_events as claude_text
from tests.support.fake_openai import FakeOpenAI, Reply, text_events
from tests.support.live import LiveServer, settled_call
from tests.support.receiver import Receiver
from tests.support.rtvi_client import RTClient


async def test_an_llm_failing_mid_call_switches_to_the_fallback_and_the_call_goes_on(
    live: LiveServer, fake_openai: FakeOpenAI, fake_anthropic: FakeAnthropic, receiver: Receiver
) -> None:
    team = await live.world.team("acme")
    r = await live.world.client.post(
        "/v1/provider-credentials",
        json={"name": "Claude", "provider": "anthropic", "secret": KEY},
        headers=team.auth(),
    )
    assert r.status_code == 201, r.text
    claude = {"engine": "anthropic", "model": "claude-test", "base_url": fake_anthropic.base_url,
              "credential_id": r.json()["id"]}  # fmt: skip
    llm = {"engine": "openai", "base_url": fake_openai.base_url, "model": "fake-model", "fallback": [claude]}
    body = {"name": "shop", "prompt": "Be brief.", "llm": llm, "webhook_url": receiver.url}
    r = await live.world.client.post("/v1/agents", json=body, headers=team.auth())
    assert r.status_code == 201, r.text
    fake_openai.replies += [
        Reply(events=text_events("Turn one.")),
        Reply(status=500, error="upstream exploded"),
    ]
    fake_anthropic.replies.append(ClaudeReply(events=claude_text("Turn two, from the fallback.")))
    call = await live.web_call(team, r.json()["id"], mode="text")
    answers = []
    async with RTClient(str(call["websocket_url"])) as client:
        for question in ("Hello?", "And now?"):
            since = time.monotonic()
            await client.send("send-text", {"content": question})
            await client.wait_for("metrics", since=since)
            answers.append("".join(m["data"]["text"] for m in client.messages("bot-llm-text", since=since)))
        await client.send("disconnect-bot")
        await client.wait_for("server-message")
    assert answers == ["Turn one.", "Turn two, from the fallback."]

    record = await settled_call(live, team.auth(), str(call["id"]))
    assert record["end_reason"] == "caller_hangup"
    async with live.runtime.db.read() as s:
        events = await calls.list_events(s, call_id=str(call["id"]))
    (switch,) = [e.data for e in events if e.type == "call.provider_switched"]
    assert switch["role"] == "llm" and (switch["from"], switch["to"]) == ("openai", "anthropic")
    assert switch["at_start"] is False and "upstream exploded" in switch["reason"]

    hits = await receiver.wait_for(1, timeout=20)
    while not any(h.payload["type"] == "call.provider_switched" for h in hits):
        hits = await receiver.wait_for(len(hits) + 1, timeout=20)
    sent = next(h.payload for h in hits if h.payload["type"] == "call.provider_switched")
    assert sent["data"]["call_id"] == call["id"] and sent["data"]["to"] == "anthropic"
