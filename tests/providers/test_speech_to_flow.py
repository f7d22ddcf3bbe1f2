"""Caller speech (piper) → Whisper → demo flow: the booking sentence is understood in one turn."""

from __future__ import annotations

from datetime import date

import pytest

from callgate.flows import FlowAgent
from callgate.flows.demo import demo_flow
from callgate.pipeline.interfaces import AgentData, AgentText

pytestmark = pytest.mark.speech


async def test_spoken_booking_request_is_confirmed(piper_booking_16k: bytes) -> None:
    pytest.importorskip("faster_whisper")
    from callgate.providers.whisper import WhisperSTT

    transcript = await WhisperSTT().transcribe(piper_booking_16k)
    agent = FlowAgent(demo_flow(), today=lambda: date(2026, 11, 22))
    [event async for event in agent.greet()]
    events = [event async for event in agent.respond(transcript.text)]
    assert AgentData({"day": "2026-11-23", "time": "15:00"}) in events
    reply = " ".join(e.text for e in events if isinstance(e, AgentText))
    assert "tomorrow at three p.m." in reply, (transcript.text, reply)
