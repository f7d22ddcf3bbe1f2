"""Builds one call's engines (VAD, STT, TTS, agent brain) and pipeline options from its plan.

Engine choice lives in :class:`callgate.providers.registry.EngineRegistry`; heavy models are loaded
once per process there and shared, while per-call state (VAD stream, chat history, flow position) is
per call.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from callgate.domain.live_calls import AgentPlan, CallPlan
from callgate.errors import ProviderUnavailable
from callgate.flows import FlowAgent, PromptAgent, validate_flow
from callgate.flows.text import render
from callgate.pipeline.interfaces import STT, TTS, VAD, AgentEngine
from callgate.pipeline.options import Mode, PipelineOptions
from callgate.pipeline.tools import definitions
from callgate.providers.deaf import DeafSTT, DeafVAD
from callgate.providers.fallback import FallbackLLM, FallbackSTT, FallbackTTS, SwitchLog
from callgate.providers.registry import EngineRegistry
from callgate.providers.settings import Role
from callgate.realtime.session import Engines

log = logging.getLogger(__name__)

_TURN_DETECTION = frozenset(
    {
        "end_of_turn_silence_ms",
        "early_end_silence_ms",
        "finished_sentence_silence_ms",
        "transcribe_pause_ms",
        "vad_threshold",
        "min_speech_ms",
        "allow_interruptions",
        "interruption_hold_ms",
        "interruption_min_speech_ms",
        "held_pause_ms",
        "held_wait_ms",
        "continue_window_ms",
        "early_end_backoff_ms",
        "preemptive_generation",
        "open_phrase_wait",
        "semantic",
        "semantic_threshold",
        "max_wait_ms",
        "hangover_cut_db",
        "reminder_after_s",
        "reminder_max_count",
    }
)


_DEFAULTS = PipelineOptions()


def pipeline_options(
    agent: AgentPlan, *, mode: Mode, output_sample_rate: int, variables: Mapping[str, Any] | None = None
) -> PipelineOptions:
    """A call's pipeline tuning: the agent's ``turn_detection`` over the defaults, and its language
    (what the STT engines are told to hear); its reminders filled in with the call's ``variables``. An
    unset (None) tuning keeps its default: Vocode agents made before their fields were stored like
    ``POST /v1/agents``."""
    turn: dict[str, Any] = {
        k: v for k, v in agent.turn_detection.items() if k in _TURN_DETECTION and v is not None
    }
    if (backchannels := agent.turn_detection.get("backchannels")) is not None:
        turn["backchannels"] = tuple(backchannels)
    if turn.get("reminder_after_s", _DEFAULTS.reminder_after_s) >= agent.silence_timeout_s:
        turn["reminder_after_s"] = 0  # the silence timeout ends the call first (with its goodbye)
    values = {k: str(v) for k, v in (variables or {}).items()}
    if (reminders := agent.turn_detection.get("reminders")) is not None:
        turn["reminders"] = tuple(render(text, values) for text in reminders)
    if (goodbye := agent.turn_detection.get("silence_goodbye")) is not None:
        turn["silence_goodbye"] = render(goodbye, values)
    return PipelineOptions(mode=mode, output_sample_rate=output_sample_rate, language=agent.language, **turn)


def _language_note(language: str) -> str:
    """Told to the LLM of a prompt agent that does not speak English (its engines are told too)."""
    if language.lower().split("-")[0] == "en":
        return ""
    return f"\n\nThe caller speaks the language with BCP 47 tag {language}: always answer in that language."


def _stage(
    registry: EngineRegistry, role: Role, settings: dict[str, Any], plan: CallPlan, switches: SwitchLog
) -> Any:
    """The stage's engine: the one named, or a fallback wrapper over several (providers/fallback.py)."""
    agent = plan.agent
    candidates = registry.candidates(role, settings, credentials=agent.credentials, language=agent.language)
    if len(candidates) == 1:  # no fallback: build errors surface as before
        return registry.build(role, settings, credentials=agent.credentials, language=agent.language)
    timeout = registry.stage(role, settings).first_result_timeout_s
    if role == "stt":
        return FallbackSTT(candidates, switches=switches, first_result_timeout_s=timeout)
    if role == "tts":
        return FallbackTTS(candidates, switches=switches, first_result_timeout_s=timeout)
    return FallbackLLM(candidates, switches=switches, first_result_timeout_s=timeout)


def _build(registry: EngineRegistry, plan: CallPlan, mode: Mode) -> Engines:
    agent, variables = plan.agent, plan.variables
    switches = SwitchLog()
    brain: AgentEngine
    if agent.flow is not None:
        brain = FlowAgent(
            validate_flow(agent.flow, known_variables=variables),
            variables=variables,
            tools=definitions(agent.tools),
            language=agent.language,
        )
    else:
        assert agent.prompt is not None
        brain = PromptAgent(
            _stage(registry, "llm", agent.llm, plan, switches),
            prompt=agent.prompt + _language_note(agent.language),
            variables=variables,
            initial_message=agent.initial_message,
            tools=definitions(agent.tools),
        )
    stt_settings = {k: v for k, v in agent.stt.items() if k != "vad"}
    vad: VAD
    stt: STT
    tts: TTS | None
    try:
        vad, stt = registry.vad(agent.stt.get("vad")), _stage(registry, "stt", stt_settings, plan, switches)
    except ProviderUnavailable:
        if mode != "text":
            raise
        log.info("no speech engines installed: the text call does not listen", extra={"call": plan.call_id})
        vad, stt = DeafVAD(), DeafSTT()  # the caller types; audio, if any arrives, is not listened to
    try:
        tts = _stage(registry, "tts", agent.tts, plan, switches)
    except ProviderUnavailable:
        if mode != "text":
            raise
        tts = None  # the call stays in text mode (switching to audio is refused)
    semantic = bool(agent.turn_detection.get("semantic")) and mode != "text"
    end_of_turn = registry.end_of_turn() if semantic else None
    return Engines(vad=vad, stt=stt, tts=tts, agent=brain, switches=switches, end_of_turn=end_of_turn)


async def build_engines(registry: EngineRegistry, plan: CallPlan, *, mode: Mode) -> Engines:
    """Off the event loop: the first call of a process may load models. A text call needs no speech
    engine: without one installed it runs deaf and mute (:mod:`callgate.providers.deaf`)."""
    return await asyncio.to_thread(_build, registry, plan, mode)
