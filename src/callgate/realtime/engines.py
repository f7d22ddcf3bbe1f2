"""Builds one call's engines (VAD, STT, TTS, agent brain) and pipeline options from its plan.

Engine choice lives in :class:`callgate.providers.registry.EngineRegistry`; heavy models are loaded
once per process there and shared, while per-call state (VAD stream, chat history, flow position) is
per call.
"""

from __future__ import annotations

import asyncio
import logging

from callgate.domain.live_calls import AgentPlan, CallPlan
from callgate.errors import ProviderUnavailable
from callgate.flows import FlowAgent, PromptAgent, validate_flow
from callgate.pipeline.interfaces import STT, TTS, VAD, AgentEngine
from callgate.pipeline.options import Mode, PipelineOptions
from callgate.providers.deaf import DeafSTT, DeafVAD
from callgate.providers.registry import EngineRegistry
from callgate.realtime.session import Engines

log = logging.getLogger(__name__)

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


def pipeline_options(agent: AgentPlan, *, mode: Mode, output_sample_rate: int) -> PipelineOptions:
    """A call's pipeline tuning: the agent's ``turn_detection`` over the defaults (an unset, None,
    tuning keeps its default: Vocode agents made before their fields were stored like POST /v1/agents)."""
    turn = {k: v for k, v in agent.turn_detection.items() if k in _TURN_DETECTION and v is not None}
    return PipelineOptions(mode=mode, output_sample_rate=output_sample_rate, **turn)


def _build(registry: EngineRegistry, plan: CallPlan, mode: Mode) -> Engines:
    agent, variables = plan.agent, plan.variables
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
    vad: VAD
    stt: STT
    tts: TTS | None
    try:
        vad, stt = registry.vad(agent.stt.get("vad")), registry.stt(stt_settings)
    except ProviderUnavailable:
        if mode != "text":
            raise
        log.info("no speech engines installed: the text call does not listen", extra={"call": plan.call_id})
        vad, stt = DeafVAD(), DeafSTT()  # the caller types; audio, if any arrives, is not listened to
    try:
        tts = registry.tts(agent.tts)
    except ProviderUnavailable:
        if mode != "text":
            raise
        tts = None  # the call stays in text mode (switching to audio is refused)
    return Engines(vad=vad, stt=stt, tts=tts, agent=brain)


async def build_engines(registry: EngineRegistry, plan: CallPlan, *, mode: Mode) -> Engines:
    """Off the event loop: the first call of a process may load models. A text call needs no speech
    engine: without one installed it runs deaf and mute (:mod:`callgate.providers.deaf`)."""
    return await asyncio.to_thread(_build, registry, plan, mode)
