"""Builds one call's engines (VAD, STT, TTS, agent brain) from its agent's settings.

Engine choice lives in :class:`callgate.providers.registry.EngineRegistry`; heavy models are loaded
once per process there and shared, while per-call state (VAD stream, chat history, flow position) is
per call.
"""

from __future__ import annotations

import asyncio
from typing import Any

from callgate.flows import FlowAgent, PromptAgent, validate_flow
from callgate.pipeline.interfaces import AgentEngine
from callgate.pipeline.options import Mode, PipelineOptions
from callgate.realtime.session import Engines
from callgate.runtime import Runtime
from callgate.store.models import Agent, Call

_TURN_DETECTION = frozenset(
    {
        "end_of_turn_silence_ms",
        "early_end_silence_ms",
        "vad_threshold",
        "min_speech_ms",
        "allow_interruptions",
        "interruption_min_speech_ms",
    }
)


def pipeline_options(agent: Agent, *, mode: Mode, output_sample_rate: int) -> PipelineOptions:
    """A call's pipeline tuning: the agent's ``turn_detection`` over the defaults."""
    turn = {k: v for k, v in (agent.turn_detection or {}).items() if k in _TURN_DETECTION}
    return PipelineOptions(mode=mode, output_sample_rate=output_sample_rate, **turn)


def call_variables(agent: Agent, call: Call) -> dict[str, Any]:
    return {**agent.variables, **call.variables}


def _build(runtime: Runtime, agent: Agent, call: Call) -> Engines:
    registry = runtime.engines
    variables = call_variables(agent, call)
    brain: AgentEngine
    if agent.flow is not None:
        brain = FlowAgent(validate_flow(agent.flow, known_variables=variables), variables=variables)
    else:
        assert agent.prompt is not None
        brain = PromptAgent(
            registry.llm(agent.llm),
            prompt=agent.prompt,
            variables=variables,
            initial_message=agent.initial_message,
        )
    stt_settings = {k: v for k, v in agent.stt.items() if k != "vad"}
    return Engines(
        vad=registry.vad(agent.stt.get("vad")),
        stt=registry.stt(stt_settings),
        tts=registry.tts(agent.tts),
        agent=brain,
    )


async def build_engines(runtime: Runtime, *, agent: Agent, call: Call) -> Engines:
    """Off the event loop: the first call of a process may load models."""
    return await asyncio.to_thread(_build, runtime, agent, call)
