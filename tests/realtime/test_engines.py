"""A call's engines and pipeline options come from its plan alone."""

from __future__ import annotations

from callgate.domain.live_calls import AgentPlan
from callgate.pipeline.options import PipelineOptions
from callgate.realtime.engines import pipeline_options


def test_pipeline_options_take_the_agents_settings_over_the_defaults() -> None:
    agent = AgentPlan(
        id="agt_1",
        prompt=None,
        flow={},
        initial_message=None,
        turn_detection={"end_of_turn_silence_ms": 900, "allow_interruptions": False},
    )
    options = pipeline_options(agent, mode="text", output_sample_rate=24000)
    defaults = PipelineOptions()
    assert options.end_of_turn_silence_ms == 900 and options.allow_interruptions is False
    assert options.mode == "text" and options.output_sample_rate == 24000
    assert options.early_end_silence_ms == defaults.early_end_silence_ms
    assert options.vad_threshold == defaults.vad_threshold


def test_semantic_turn_detection_and_backchannels_reach_the_pipeline() -> None:
    agent = AgentPlan(
        id="agt_1",
        prompt=None,
        flow={},
        initial_message=None,
        turn_detection={
            "semantic": True, "semantic_threshold": 0.7, "max_wait_ms": 2000, "early_end_silence_ms": 150,
            "interruption_hold_ms": 80, "backchannels": ["mm-hmm", "ja"], "hangover_cut_db": 0,
            "open_phrase_wait": False, "continue_window_ms": 0, "early_end_backoff_ms": 250,
        },
    )  # fmt: skip
    options = pipeline_options(agent, mode="audio", output_sample_rate=16000)
    assert options.semantic and options.semantic_threshold == 0.7 and options.max_wait_ms == 2000
    assert options.early_end_silence_ms == 150 and options.interruption_hold_ms == 80
    assert options.backchannels == ("mm-hmm", "ja") and options.hangover_cut_db == 0
    assert options.open_phrase_wait is False and options.continue_window_ms == 0
    assert options.early_end_backoff_ms == 250
