"""A caller who goes quiet is reminded ("Are you still there?"), over a real WebSocket call."""

from __future__ import annotations

import time

import pytest

from tests.support.live import LiveServer, wait_settled
from tests.support.rtvi_client import RTClient, nonsilent_seconds

pytestmark = pytest.mark.speech


async def test_a_quiet_caller_hears_the_agents_reminders_and_the_call_keeps_them(live: LiveServer) -> None:
    team = await live.world.team("acme")
    turn_detection = {
        "reminder_after_s": 1.0,
        "reminder_max_count": 2,
        "reminders": ["Hello {{name}}, are you there?", "I am still here."],
    }
    agent_id = await live.flow_agent(team, turn_detection=turn_detection, variables={"name": "Sam"})
    call = await live.web_call(team, agent_id)
    # The demo flow's first step asks again what it asked: its reprompt follows each reminder.
    again = "You can say: book an appointment, opening hours, or speak to someone."
    async with RTClient(str(call["websocket_url"])) as client:
        await client.wait_for("bot-stopped-speaking", timeout=30)  # the greeting played out
        quiet_from = time.monotonic()
        await client.silence(16.0)  # a live microphone in a quiet room: two reminders, then nothing
        said = [m["data"]["text"] for m in client.messages("bot-tts-text", since=quiet_from)]
        assert said == ["Hello Sam, are you there?", again, "I am still here.", again]
        started = [
            t for t, m in client.got.messages if m["type"] == "bot-started-speaking" and t >= quiet_from
        ]
        assert len(started) == 2 and started[0] - quiet_from >= 0.9
        assert nonsilent_seconds(client.audio_since(quiet_from), 16000) >= 3.0  # they were spoken
        await client.send("disconnect-bot")

    body = await wait_settled(live, team.auth(), str(call["id"]))
    agent_turns = [t["text"] for t in body["transcript"] if t["role"] == "agent"]
    assert agent_turns[1:] == [f"Hello Sam, are you there? {again}", f"I am still here. {again}"]
    assert all(t["role"] == "agent" for t in body["transcript"])  # no caller turn was made up


async def test_the_silence_timeout_says_goodbye_before_it_ends_the_call(live: LiveServer) -> None:
    team = await live.world.team("acme")
    # The defaults' texts, sooner: a reminder after 1.5 s of silence, the end after 5 s more.
    agent_id = await live.flow_agent(team, turn_detection={"reminder_after_s": 1.5}, silence_timeout_s=5)
    call = await live.web_call(team, agent_id)
    async with RTClient(str(call["websocket_url"])) as client:
        await client.wait_for("bot-stopped-speaking", timeout=30)
        quiet_from = time.monotonic()
        ended = await client.silence_until_closed(timeout=40)  # a quiet room until the server hangs up
        said = [m["data"]["text"] for m in client.messages("bot-tts-text", since=quiet_from)]
        assert said[0] == "Are you still there?" and said[-2:] == ["I'll end the call now.", "Goodbye!"]
        assert ended - quiet_from >= 1.5 + 5

    body = await wait_settled(live, team.auth(), str(call["id"]))
    assert body["end_reason"] == "silence_timeout"
    agent_turns = [t["text"] for t in body["transcript"] if t["role"] == "agent"]
    assert agent_turns[-1] == "I'll end the call now. Goodbye!"
    assert agent_turns[-2].startswith("Are you still there?")
