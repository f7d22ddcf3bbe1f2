"""Agents' tools in live calls: a real server, the fake OpenAI-compatible LLM streaming tool calls, a real
webhook receiver answering (and verifying) ``http`` tool requests, and an RTVI client over WebSocket."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from callgate.config import Settings
from tests.support.fake_openai import FakeOpenAI, Reply, text_events, tool_calls_events, tool_events
from tests.support.live import LiveServer, settled_call
from tests.support.receiver import Receiver
from tests.support.receiver import Reply as Answer
from tests.support.rtvi_client import RTClient, nonsilent_seconds
from tests.support.world import Team, make_settings

ORDER_SCHEMA = {
    "type": "object",
    "properties": {"order_id": {"type": "string"}},
    "required": ["order_id"],
}
UNROUTABLE_PRIVATE = "http://10.255.255.1:9/orders"


@pytest.fixture
def live_settings(tmp_path: Path, sqlite_template: Path) -> Settings:
    """Loopback is allowed (the receiver and the fake LLMs live there); every other private address
    stays refused."""
    path = tmp_path / "callgate.db"
    path.write_bytes(sqlite_template.read_bytes())
    return make_settings(
        tmp_path,
        f"sqlite+aiosqlite:///{path}",
        public_url=None,
        webhooks_allowed_networks=["127.0.0.0/8"],
        webhooks_poll_interval_s=0.05,
    )


@pytest.fixture
def orders(receiver: Receiver) -> Iterator[Receiver]:
    receiver.default = Answer(
        status=200,
        body=json.dumps({"order_id": "A123", "status": "shipped", "eta": "Tuesday"}),
        headers={"content-type": "application/json"},
    )
    yield receiver


def lookup_order(url: str, **extra: Any) -> dict[str, Any]:
    return {
        "type": "http",
        "name": "lookup_order",
        "description": "Look up an order by its id.",
        "parameters": ORDER_SCHEMA,
        "url": url,
        "headers": {"Authorization": "Bearer shop-secret"},
        "message": "One moment while I check that.",
        **extra,
    }


async def prompt_agent(
    live: LiveServer, team: Team, fake: FakeOpenAI, tools: list[dict[str, Any]], **fields: Any
) -> str:
    body = {
        "name": "shop",
        "prompt": "You help {{customer}} with orders.",
        "variables": {"customer": "Ann"},
        "llm": {"engine": "openai", "base_url": fake.base_url, "model": "fake-model"},
        "tools": tools,
        **fields,
    }
    r = await live.world.client.post("/v1/agents", json=body, headers=team.auth())
    assert r.status_code == 201, r.text
    agent_id: str = r.json()["id"]
    return agent_id


async def team_secret(live: LiveServer, team: Team) -> str:
    r = await live.world.client.post(
        "/v1/webhook-signing-secret/rotate", json={"overlap_s": 0}, headers=team.auth()
    )
    assert r.status_code == 200, r.text
    secret: str = r.json()["secret"]
    return secret


async def said(client: RTClient, since: float, *, until: str = "bot-stopped-speaking") -> str:
    """The agent's text (``bot-llm-text``) since ``since``, once the reply has finished."""
    await client.wait_for("metrics", since=since)
    return "".join(m["data"]["text"] for m in client.messages("bot-llm-text", since=since))


def tool_messages(request: dict[str, Any]) -> list[dict[str, Any]]:
    return [m for m in request["messages"] if m["role"] == "tool"]


async def test_http_tool_is_signed_answered_spoken_and_recorded(
    live: LiveServer, fake_openai: FakeOpenAI, orders: Receiver
) -> None:
    team = await live.world.team("acme")
    orders.secrets = {"team": await team_secret(live, team)}
    agent_id = await prompt_agent(
        live,
        team,
        fake_openai,
        [lookup_order(orders.url)],
        webhook_url=orders.url.replace("/hooks", "/events"),
    )
    shown = (await live.world.client.get(f"/v1/agents/{agent_id}", headers=team.auth())).json()
    assert shown["tools"][0]["headers"] == {"Authorization": "********"}

    fake_openai.replies += [
        Reply(events=tool_events("lookup_order", '{"order_id": "A123"}', text="Let me look.")),
        Reply(events=text_events("Your order A123 has shipped", " and arrives Tuesday.")),
    ]
    call = await live.web_call(team, agent_id, mode="text", variables={"customer": "Bob"})
    async with RTClient(str(call["websocket_url"])) as client:
        since = time.monotonic()
        await client.send("send-text", {"content": "Where is my order A123?"})
        answer = await said(client, since)
        await client.send("disconnect-bot")
        await client.wait_for("server-message")
    assert (
        answer
        == "Let me look. One moment while I check that. Your order A123 has shipped and arrives Tuesday."
    )

    hit = next(h for h in orders.all() if h.path == "/hooks")
    assert hit.verified_by == ["team"]  # Standard Webhooks signature under the team's signing secret
    assert hit.headers["authorization"] == "Bearer shop-secret"
    assert hit.payload["arguments"] == {"order_id": "A123"}
    assert hit.payload["call"] == {"id": call["id"], "agent_id": agent_id, "variables": {"customer": "Bob"}}
    assert hit.payload["tool"] == "lookup_order" and hit.payload["tool_call_id"] == "call_1"

    second = fake_openai.requests[1]["messages"]
    assert (
        second[-2]["role"] == "assistant"
        and second[-2]["tool_calls"][0]["function"]["name"] == "lookup_order"
    )
    assert second[-1]["tool_call_id"] == "call_1"
    assert json.loads(second[-1]["content"])["status"] == "shipped"

    body = await settled_call(live, team.auth(), str(call["id"]))
    roles = [t["role"] for t in body["transcript"]]
    assert roles == ["user", "tool", "agent"]
    tool = body["transcript"][1]
    assert tool["text"] == "lookup_order" and tool["interrupted"] is False
    assert tool["tool"]["arguments"] == {"order_id": "A123"}
    assert tool["tool"]["result"]["eta"] == "Tuesday" and tool["tool"]["error"] is None
    assert tool["tool"]["kind"] == "http" and tool["tool"]["latency_ms"] >= 0

    events = await orders.wait_for(1 + 6, timeout=20)  # the tool request + the call's webhooks
    called = [h.payload for h in events if h.path == "/events" and h.payload["type"] == "call.tool_called"]
    assert called and called[0]["data"]["tool"]["name"] == "lookup_order"
    assert all(h.verified_by == ["team"] for h in events)


async def test_a_flow_step_calls_an_http_tool_and_speaks_the_stored_answer(
    live: LiveServer, orders: Receiver
) -> None:
    team = await live.world.team("acme")
    orders.secrets = {"team": await team_secret(live, team)}
    flow = {
        "start": "ask",
        "slots": {"order": {"type": "number", "prompt": "What is your order number?"}},
        "states": {
            "ask": {"collect": ["order"], "next": "lookup"},
            "lookup": {
                "say": "Let me check.",
                "tool": {
                    "name": "lookup_order",
                    "arguments": {"order_id": "A{{order}}"},
                    "store": {"order_status": "status", "eta": "eta"},
                },
                "next": "told",
                "on_error": "sorry",
            },
            "told": {"say": "Order {{order}} has {{order_status}} and arrives {{eta}}.", "end": True},
            "sorry": {"say": "Sorry, I cannot find it.", "end": True},
        },
    }
    r = await live.world.client.post(
        "/v1/agents",
        json={"name": "orders", "flow": flow, "tools": [lookup_order(orders.url)]},
        headers=team.auth(),
    )
    assert r.status_code == 201, r.text
    call = await live.web_call(team, r.json()["id"], mode="text")
    async with RTClient(str(call["websocket_url"])) as client:
        await client.wait_for("bot-llm-text")
        since = time.monotonic()
        await client.send("send-text", {"content": "It's order 123."})
        ended = await client.wait_for("server-message", since=since)
        answer = "".join(m["data"]["text"] for m in client.messages("bot-llm-text", since=since))
    assert ended["data"]["reason"] == "agent_ended"
    assert answer == (
        "Let me check. One moment while I check that. Order 123 has shipped and arrives Tuesday."
    )
    hit = next(h for h in orders.all() if h.path == "/hooks")
    assert hit.verified_by == ["team"]  # signed like the prompt agent's tool calls
    assert hit.payload["arguments"] == {"order_id": "A123"} and hit.payload["tool"] == "lookup_order"
    assert hit.payload["call"]["id"] == call["id"]

    body = await settled_call(live, team.auth(), str(call["id"]))
    assert [t["role"] for t in body["transcript"]] == ["agent", "user", "tool", "agent"]
    tool = body["transcript"][2]["tool"]
    assert tool["name"] == "lookup_order" and tool["kind"] == "http" and tool["error"] is None
    assert tool["arguments"] == {"order_id": "A123"} and tool["result"]["status"] == "shipped"
    assert body["data"] == {"order": 123, "order_status": "shipped", "eta": "Tuesday"}


async def test_timeout_and_refused_address_are_tool_errors_and_the_call_goes_on(
    live: LiveServer, fake_openai: FakeOpenAI, receiver: Receiver
) -> None:
    team = await live.world.team("acme")
    receiver.default = Answer(status=200, body="{}", delay=3.0)
    slow = lookup_order(receiver.url, name="slow_lookup", timeout_ms=300, message=None)
    private = lookup_order(UNROUTABLE_PRIVATE, name="private_lookup", message=None)
    agent_id = await prompt_agent(live, team, fake_openai, [slow, private])
    fake_openai.replies += [
        Reply(
            events=tool_calls_events(
                [
                    ("slow_lookup", '{"order_id": "A1"}', "call_a"),
                    ("private_lookup", '{"order_id": "A1"}', "call_b"),
                ]
            )
        ),
        Reply(events=text_events("Sorry, I cannot check orders right now.")),
        Reply(events=text_events("Anything else?")),
    ]
    call = await live.web_call(team, agent_id, mode="text")
    async with RTClient(str(call["websocket_url"])) as client:
        since = time.monotonic()
        await client.send("send-text", {"content": "Where is order A1?"})
        assert await said(client, since) == "Sorry, I cannot check orders right now."
        since = time.monotonic()
        await client.send("send-text", {"content": "Thanks."})
        assert await said(client, since) == "Anything else?"
        await client.send("disconnect-bot")
        ended = await client.wait_for("server-message")
    assert ended["data"]["reason"] == "caller_hangup"

    errors = {
        m["tool_call_id"]: json.loads(m["content"])["error"] for m in tool_messages(fake_openai.requests[1])
    }
    assert errors["call_a"] == "the tool did not answer within 300 ms"
    assert errors["call_b"].startswith("the tool's address is refused") and "private" in errors["call_b"]
    body = await settled_call(live, team.auth(), str(call["id"]))
    tools = [t["tool"] for t in body["transcript"] if t["role"] == "tool"]
    assert [t["name"] for t in tools] == ["slow_lookup", "private_lookup"]  # in the order they were called
    assert all(t["error"] and t["result"] is None for t in tools)


async def test_hostile_tool_calls_are_tool_errors(
    live: LiveServer, fake_openai: FakeOpenAI, receiver: Receiver
) -> None:
    team = await live.world.team("acme")
    receiver.default = Answer(status=200, body=json.dumps({"blob": "x" * 200_000}))
    agent_id = await prompt_agent(
        live,
        team,
        fake_openai,
        [lookup_order(receiver.url, message=None), lookup_order(receiver.url, name="big", message=None)],
    )
    fake_openai.replies += [
        Reply(
            events=tool_calls_events(
                [
                    ("lookup_order", '{"order_id": ', "c1"),  # not JSON
                    ("lookup_order", '{"order_id": 5}', "c2"),  # not the schema
                    ("big", '{"order_id": "A1"}', "c3"),  # a huge answer
                    ("rm_rf", "{}", "c4"),  # no such tool
                    ("lookup_order", "[1, 2]", "c5"),  # not an object
                ]
            )
        ),
        Reply(events=text_events("Something went wrong, sorry.")),
    ]
    call = await live.web_call(team, agent_id, mode="text")
    async with RTClient(str(call["websocket_url"])) as client:
        since = time.monotonic()
        await client.send("send-text", {"content": "Order?"})
        assert await said(client, since) == "Something went wrong, sorry."
        await client.send("disconnect-bot")
        await client.wait_for("server-message")
    errors = {
        m["tool_call_id"]: json.loads(m["content"])["error"] for m in tool_messages(fake_openai.requests[1])
    }
    assert errors["c1"].startswith("the arguments are not JSON")
    assert "do not match the tool's schema at order_id" in errors["c2"]
    assert errors["c3"] == "the tool's answer is larger than 32768 bytes"
    assert errors["c4"] == "there is no tool named 'rm_rf'"
    assert errors["c5"].startswith("the arguments are not a JSON object")
    # The model's raw arguments go back to it as it sent them.
    sent = fake_openai.requests[1]["messages"][-6]["tool_calls"]
    assert sent[0]["function"]["arguments"] == '{"order_id":'
    body = await settled_call(live, team.auth(), str(call["id"]))
    assert body["end_reason"] == "caller_hangup"
    assert next(t["tool"]["arguments"] for t in body["transcript"] if t["role"] == "tool") == '{"order_id":'


async def test_client_tool_round_trip_and_a_client_that_never_answers(
    live: LiveServer, fake_openai: FakeOpenAI
) -> None:
    team = await live.world.team("acme")
    fill = {
        "type": "client",
        "name": "fill_form",
        "description": "Fill the form on the page.",
        "parameters": {"type": "object", "properties": {"email": {"type": "string"}}},
        "timeout_ms": 600,
    }
    agent_id = await prompt_agent(live, team, fake_openai, [fill])
    fake_openai.replies += [
        Reply(events=tool_events("fill_form", '{"email": "ann@example.com"}', call_id="call_f")),
        Reply(events=text_events("Done, the form is filled.")),
        Reply(events=tool_events("fill_form", '{"email": "bob@example.com"}', call_id="call_g")),
        Reply(events=text_events("The page did not answer.")),
    ]
    call = await live.web_call(team, agent_id, mode="text")
    async with RTClient(str(call["websocket_url"])) as client:
        since = time.monotonic()
        await client.send("send-text", {"content": "My email is ann@example.com"})
        asked = await client.wait_for("llm-function-call", since=since)
        assert asked["data"] == {
            "function_name": "fill_form",
            "tool_call_id": "call_f",
            "args": {"email": "ann@example.com"},
        }
        await client.send("llm-function-call-result", {"tool_call_id": "nope", "result": {}})
        assert (await client.wait_for("error", since=since))["data"]["fatal"] is False
        await client.send(
            "llm-function-call-result",
            {
                "function_name": "fill_form",
                "tool_call_id": "call_f",
                "arguments": asked["data"]["args"],
                "result": {"filled": True},
            },
        )
        assert await said(client, since) == "Done, the form is filled."
        since = time.monotonic()
        await client.send("send-text", {"content": "Now bob@example.com"})
        await client.wait_for("llm-function-call", since=since)  # and never answer
        assert await said(client, since) == "The page did not answer."
        await client.send("disconnect-bot")
        await client.wait_for("server-message")
    assert json.loads(tool_messages(fake_openai.requests[1])[0]["content"]) == {"filled": True}
    last = tool_messages(fake_openai.requests[3])[-1]
    assert json.loads(last["content"]) == {"error": "the caller's app did not answer within 600 ms"}


async def test_transfer_call_on_a_web_call(live: LiveServer, fake_openai: FakeOpenAI) -> None:
    team = await live.world.team("acme")
    transfer = {"type": "transfer_call", "destinations": ["+15550100", "sip:sales@example.com"]}
    agent_id = await prompt_agent(live, team, fake_openai, [transfer])
    fake_openai.replies.append(
        Reply(
            events=tool_events(
                "transfer_call",
                '{"target": "sip:sales@example.com"}',
                text="I am putting you through to sales.",
            )
        )
    )
    call = await live.web_call(team, agent_id, mode="text")
    async with RTClient(str(call["websocket_url"])) as client:
        await client.send("send-text", {"content": "I want to buy, let me talk to sales."})
        told = await client.wait_for("server-message")
        assert told["data"] == {"type": "transfer", "target": "sip:sales@example.com"}
        ended = [m for m in client.messages("server-message") if m["data"].get("type") == "call-ended"]
        if not ended:
            await client.wait_for("server-message", since=0)
    sent = {t["function"]["name"]: t["function"]["parameters"] for t in fake_openai.requests[0]["tools"]}
    assert sent["transfer_call"]["properties"]["target"]["enum"] == ["+15550100", "sip:sales@example.com"]
    body = await settled_call(live, team.auth(), str(call["id"]))
    assert body["end_reason"] == "transferred"
    assert body["data"]["transfer_target"] == "sip:sales@example.com"
    assert any(t["role"] == "agent" and "sales" in t["text"] for t in body["transcript"])
    assert [t["tool"]["name"] for t in body["transcript"] if t["role"] == "tool"] == ["transfer_call"]


async def test_send_dtmf_on_a_web_call_is_a_tool_error(live: LiveServer, fake_openai: FakeOpenAI) -> None:
    team = await live.world.team("acme")
    agent_id = await prompt_agent(
        live, team, fake_openai, [{"type": "transfer_call", "target": "+15550100"}, {"type": "send_dtmf"}]
    )
    fake_openai.replies += [
        Reply(events=tool_calls_events([("send_dtmf", '{"digits": "12#"}', "d1")])),
        Reply(events=text_events("I cannot press keys on this call.")),
    ]
    call = await live.web_call(team, agent_id, mode="text")
    async with RTClient(str(call["websocket_url"])) as client:
        since = time.monotonic()
        await client.send("send-text", {"content": "Press 1 2 hash."})
        assert await said(client, since) == "I cannot press keys on this call."
        await client.send("disconnect-bot")
        await client.wait_for("server-message")
    error = json.loads(tool_messages(fake_openai.requests[1])[0]["content"])["error"]
    assert error == "this is a web call: there is no phone line to press keys on"


@pytest.mark.speech
async def test_http_tool_answer_is_spoken_in_audio_mode(
    live: LiveServer, fake_openai: FakeOpenAI, orders: Receiver
) -> None:
    team = await live.world.team("acme")
    agent_id = await prompt_agent(live, team, fake_openai, [lookup_order(orders.url)])
    fake_openai.replies += [
        Reply(events=tool_events("lookup_order", '{"order_id": "A123"}')),
        Reply(events=text_events("Your order has shipped.")),
    ]
    call = await live.web_call(team, agent_id, mode="audio")
    async with RTClient(str(call["websocket_url"])) as client:
        since = time.monotonic()
        await client.send("send-text", {"content": "Where is my order A123?"})
        await client.wait_for("metrics", since=since, timeout=60)
        spoken = " ".join(m["data"]["text"] for m in client.messages("bot-tts-text", since=since))
        audio = client.audio_since(since)
        await client.send("disconnect-bot")
        await client.wait_for("server-message")
    assert spoken == "One moment while I check that. Your order has shipped."
    assert nonsilent_seconds(audio, 16000) > 1.0
