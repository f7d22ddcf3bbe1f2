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
            "finished_sentence_silence_ms": 600,
        },
    )  # fmt: skip
    options = pipeline_options(agent, mode="audio", output_sample_rate=16000)
    assert options.semantic and options.semantic_threshold == 0.7 and options.max_wait_ms == 2000
    assert options.early_end_silence_ms == 150 and options.interruption_hold_ms == 80
    assert options.backchannels == ("mm-hmm", "ja") and options.hangover_cut_db == 0
    assert options.open_phrase_wait is False and options.continue_window_ms == 0
    assert options.early_end_backoff_ms == 250 and options.finished_sentence_silence_ms == 600


def test_reminders_reach_the_pipeline_filled_in_and_only_before_the_silence_timeout() -> None:
    def agent(turn_detection: dict[str, object], silence_timeout_s: int = 60) -> AgentPlan:
        return AgentPlan(
            id="agt_1", prompt=None, flow={}, initial_message=None, turn_detection=turn_detection,
            silence_timeout_s=silence_timeout_s,
        )  # fmt: skip

    settings = {
        "reminder_after_s": 7.5, "reminder_max_count": 3, "held_pause_ms": 0,
        "reminders": ["Are you there, {{name}}?"], "silence_goodbye": "Bye {{name}}.",
    }  # fmt: skip
    options = pipeline_options(
        agent(settings), mode="audio", output_sample_rate=16000, variables={"name": "Jo"}
    )
    assert options.reminder_after_s == 7.5 and options.reminder_max_count == 3 and options.held_pause_ms == 0
    assert options.reminders == ("Are you there, Jo?",) and options.silence_goodbye == "Bye Jo."
    # A reminder that would come after the silence timeout never does: the call ends first, with its goodbye.
    assert pipeline_options(agent({}, 10), mode="audio", output_sample_rate=16000).reminder_after_s == 0
    assert pipeline_options(agent({}, 11), mode="audio", output_sample_rate=16000).reminder_after_s == 10
    late = pipeline_options(agent({"reminder_after_s": 30}, 20), mode="audio", output_sample_rate=16000)
    assert late.reminder_after_s == 0
