"""Text-mode calls over the WebSocket transport, against a real server with the demo flow."""

from __future__ import annotations

import asyncio

import pytest
import websockets
from websockets.asyncio.client import ClientConnection

from tests.support.live import LiveServer
from tests.support.rtvi_client import next_message, rtvi


async def agent_text(ws: ClientConnection, *, timeout: float = 15) -> str:
    """Collect bot-tts-text messages until the agent stops for a moment."""
    parts = [(await next_message(ws, "bot-tts-text", timeout=timeout))["data"]["text"]]
    while True:
        try:
            msg = await next_message(ws, "bot-tts-text", timeout=1.0)
        except TimeoutError:
            return " ".join(parts)
        parts.append(msg["data"]["text"])


async def test_text_call_books_an_appointment(live: LiveServer) -> None:
    team = await live.world.team("acme")
    agent_id = await live.flow_agent(team)
    call = await live.web_call(team, agent_id, mode="text")
    async with websockets.connect(str(call["websocket_url"])) as ws:
        await ws.send(rtvi("client-ready", {"version": "1.0.0"}))
        ready = await next_message(ws, "bot-ready")
        assert ready["data"]["call_id"] == call["id"] and ready["data"]["mode"] == "text"
        greeting = await agent_text(ws)
        assert "Maple Street" in greeting
        await ws.send(
            rtvi("send-text", {"content": "I would like to book an appointment for tomorrow at three pm"})
        )
        answer = await agent_text(ws)
        assert "tomorrow" in answer.lower() and "three" in answer.lower()
        await ws.send(rtvi("disconnect-bot"))
        ended = await next_message(ws, "server-message")
        assert ended["data"] == {"type": "call-ended", "reason": "caller_hangup"}
        with pytest.raises(websockets.ConnectionClosedOK):
            await asyncio.wait_for(ws.recv(), 5)
        assert ws.close_code == 1000

    r = await live.world.client.get(f"/v1/calls/{call['id']}", headers=team.auth())
    body = r.json()
    assert body["status"] == "ended" and body["end_reason"] == "caller_hangup"
    roles = [t["role"] for t in body["transcript"]]
    assert roles[0] == "agent" and "user" in roles
    user_turn = next(t for t in body["transcript"] if t["role"] == "user")
    assert "appointment" in user_turn["text"]
    assert any("tomorrow" in t["text"].lower() for t in body["transcript"] if t["role"] == "agent")


async def test_mode_switch_and_mute_are_acknowledged(live: LiveServer) -> None:
    team = await live.world.team("acme")
    agent_id = await live.flow_agent(team)
    call = await live.web_call(team, agent_id, mode="text")
    async with websockets.connect(str(call["websocket_url"])) as ws:
        await ws.send(rtvi("client-ready", {"version": "1.0.0"}))
        await next_message(ws, "bot-ready")
        await ws.send(rtvi("client-message", {"t": "mute", "d": {"muted": True}}))
        answer = await next_message(ws, "server-response")
        assert answer["data"] == {"t": "mute", "d": {"muted": True}} and answer["id"] == "t1"
        await ws.send(rtvi("client-message", {"t": "set-mode", "d": {"mode": "audio"}}))
        answer = await next_message(ws, "server-response")
        assert answer["data"] == {"t": "set-mode", "d": {"mode": "audio"}}
        await ws.send(rtvi("send-text", {"content": "What are your opening hours?"}))
        # Now in audio mode, the answer is spoken: agent audio frames arrive.
        async with asyncio.timeout(20):
            while not isinstance(await ws.recv(), bytes):
                pass
        await ws.send(rtvi("client-message", {"t": "dance", "d": {}}))
        error = await next_message(ws, "error")
        assert error["data"]["fatal"] is False


async def test_keys_pressed_over_rtvi_reach_the_agent_as_one_turn(live: LiveServer) -> None:
    team = await live.world.team("acme")
    agent_id = await live.flow_agent(team)
    call = await live.web_call(team, agent_id, mode="text")
    async with websockets.connect(str(call["websocket_url"])) as ws:
        await ws.send(rtvi("client-ready", {"version": "1.0.0"}))
        await next_message(ws, "bot-ready")
        await agent_text(ws)
        for bad in ({"digits": "12x"}, {"digits": ""}, {"digits": 12}, {"digits": "1" * 33}):
            await ws.send(rtvi("client-message", {"t": "dtmf", "d": bad}))
            error = await next_message(ws, "error")
            assert error["data"]["fatal"] is False
        await ws.send(rtvi("client-message", {"t": "dtmf", "d": {"digits": "4"}}))
        await ws.send(rtvi("client-message", {"t": "dtmf", "d": {"digits": "2#"}}))
        ack = await next_message(ws, "server-response")
        assert ack["data"] == {"t": "dtmf", "d": {"digits": "4"}}
        await agent_text(ws)  # the agent answers the keys
        await ws.send(rtvi("disconnect-bot"))
        await next_message(ws, "server-message")

    for _ in range(100):
        body = (await live.world.client.get(f"/v1/calls/{call['id']}", headers=team.auth())).json()
        if body["status"] == "ended":
            break
        await asyncio.sleep(0.05)
    user_turns = [t["text"] for t in body["transcript"] if t["role"] == "user"]
    assert user_turns == ["DTMF 42#"]


async def test_text_sent_right_after_bot_ready_is_answered(live: LiveServer) -> None:
    """The caller may type before the session's pipeline has started: the text waits, it is not lost."""
    team = await live.world.team("acme")
    agent_id = await live.flow_agent(team)
    call = await live.web_call(team, agent_id, mode="text")
    async with websockets.connect(str(call["websocket_url"])) as ws:
        await ws.send(rtvi("client-ready", {"version": "1.0.0"}))
        await next_message(ws, "bot-ready")
        await ws.send(rtvi("send-text", {"content": "What are your opening hours?"}))
        async with asyncio.timeout(15):
            while "open" not in (await agent_text(ws)).lower():
                pass
    r = await live.world.client.get(f"/v1/calls/{call['id']}", headers=team.auth())
    assert [t["text"] for t in r.json()["transcript"] if t["role"] == "user"] == [
        "What are your opening hours?"
    ]
