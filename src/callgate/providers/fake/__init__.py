"""Scripted fakes of every provider interface, for tests: deterministic, and timed on an injectable
clock (use :class:`VirtualClock` to run a call in virtual time)."""

from callgate.providers.fake.agent import FakeAgent, FakeLLM, ScriptedReply, tokens
from callgate.providers.fake.clock import VirtualClock, settle
from callgate.providers.fake.harness import PipelineHarness
from callgate.providers.fake.output import RecordingOutput
from callgate.providers.fake.stt import FakeSTT, FakeSTTStream
from callgate.providers.fake.tts import FakeTTS
from callgate.providers.fake.turn import FakeEndOfTurn
from callgate.providers.fake.vad import FakeVAD, FakeVADStream

__all__ = [
    "FakeAgent",
    "FakeEndOfTurn",
    "FakeLLM",
    "FakeSTT",
    "FakeSTTStream",
    "FakeTTS",
    "FakeVAD",
    "FakeVADStream",
    "PipelineHarness",
    "RecordingOutput",
    "ScriptedReply",
    "VirtualClock",
    "settle",
    "tokens",
]
