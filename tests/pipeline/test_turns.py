from __future__ import annotations

import pytest

from callgate.pipeline.options import PipelineOptions
from callgate.pipeline.turns import (
    SpeechAborted,
    SpeechEnded,
    SpeechPaused,
    SpeechResumed,
    SpeechStarted,
    SpeechState,
    TurnDetector,
    TurnEvent,
)

FRAME = bytes(640)


def feed(detector: TurnDetector, pattern: str, start: float = 0.0) -> list[tuple[float, TurnEvent]]:
    """``pattern``: one character per 20 ms frame, ``S`` speech, ``.`` silence."""
    events = []
    for i, c in enumerate(pattern):
        at = start + i * 0.02
        # Distinct frames of about the same level (within 6 dB: no hang-over cut applies).
        event = detector.process(bytes([64 + i % 128]) * 640, 1.0 if c == "S" else 0.0, at)
        if event is not None:
            events.append((at, event))
    return events


def test_speech_start_needs_min_speech_and_end_needs_the_silence() -> None:
    det = TurnDetector(PipelineOptions(min_speech_ms=100, end_of_turn_silence_ms=200), sample_rate=16000)
    events = feed(det, "...." + "S" * 20 + "." * 12)
    assert [type(e) for _, e in events] == [SpeechStarted, SpeechEnded]
    (t_start, started), (t_end, ended) = events
    assert t_start == 0.02 * (4 + 4)  # fifth speech frame confirms 100 ms
    assert started.first_speech_at == 0.02 * 4
    assert isinstance(ended, SpeechEnded)
    assert ended.last_speech_at == 0.02 * 23
    assert round(t_end - ended.last_speech_at, 6) == 0.2
    assert ended.speech_ms == 400
    # Pre-roll (4 frames) + speech (20) + trailing silence capped at 200 ms (10 frames).
    assert len(ended.audio) == (4 + 20 + 10) * 640
    assert det.state is SpeechState.QUIET


def test_short_noise_never_starts_a_turn() -> None:
    det = TurnDetector(PipelineOptions(min_speech_ms=100), sample_rate=16000)
    events = feed(det, "SSS....SS...." * 5)
    assert {type(e) for _, e in events} == {SpeechAborted}
    assert det.state is SpeechState.QUIET


def test_a_short_pause_does_not_end_the_turn() -> None:
    det = TurnDetector(
        PipelineOptions(end_of_turn_silence_ms=300, early_end_silence_ms=250, transcribe_pause_ms=0),
        sample_rate=16000,
    )
    events = feed(det, "S" * 10 + "." * 14 + "S" * 10 + "." * 15)
    assert [type(e) for _, e in events] == [
        SpeechStarted, SpeechPaused, SpeechResumed, SpeechPaused, SpeechEnded
    ]  # fmt: skip
    events = [(t, e) for t, e in events if isinstance(e, SpeechStarted | SpeechEnded)]
    ended = events[1][1]
    assert isinstance(ended, SpeechEnded)
    assert ended.speech_ms == 400


def test_trailing_silence_is_trimmed_and_preroll_kept() -> None:
    det = TurnDetector(
        PipelineOptions(preroll_ms=100, end_of_turn_silence_ms=600, min_speech_ms=20), sample_rate=16000
    )
    events = feed(det, "." * 50 + "S" * 5 + "." * 30)
    ended = events[-1][1]
    assert isinstance(ended, SpeechEnded)
    assert len(ended.audio) == (5 + 5 + 10) * 640


def test_max_utterance_forces_an_end() -> None:
    det = TurnDetector(PipelineOptions(max_utterance_ms=1000), sample_rate=16000)
    events = feed(det, "S" * 80)
    ends = [e for _, e in events if isinstance(e, SpeechEnded)]
    assert ends
    assert ends[0].forced
    assert ends[0].speech_ms == 1000


def test_a_pause_offers_the_words_so_far_and_speech_after_it_resumes() -> None:
    options = PipelineOptions(
        end_of_turn_silence_ms=500, early_end_silence_ms=200, min_speech_ms=20, transcribe_pause_ms=0
    )
    det = TurnDetector(options, sample_rate=16000)
    events = feed(det, "S" * 10 + "." * 12 + "S" * 5 + "." * 30)
    assert [type(e) for _, e in events] == [
        SpeechStarted, SpeechPaused, SpeechResumed, SpeechPaused, SpeechEnded
    ]  # fmt: skip
    (t_pause, pause), (_, resumed) = events[1], events[2]
    assert isinstance(pause, SpeechPaused) and isinstance(resumed, SpeechResumed)
    assert round(t_pause - pause.last_speech_at, 6) == 0.2
    assert len(pause.audio) == (10 + 10) * 640  # speech + 200 ms of silence, as an end would give
    second = events[3][1]
    ended = events[4][1]
    assert isinstance(second, SpeechPaused) and isinstance(ended, SpeechEnded)
    assert second.audio == ended.audio  # nothing but silence came between the pause and the end


def test_end_now_ends_the_turn_at_a_pause() -> None:
    options = PipelineOptions(
        end_of_turn_silence_ms=600, early_end_silence_ms=240, min_speech_ms=20, transcribe_pause_ms=0
    )
    det = TurnDetector(options, sample_rate=16000)
    events = feed(det, "S" * 10 + "." * 12)
    assert isinstance(events[-1][1], SpeechPaused)
    ended = det.end_now()
    assert ended.audio == events[-1][1].audio and not ended.forced and ended.speech_ms == 200
    assert det.state is SpeechState.QUIET
    assert feed(det, "." * 40) == []  # the silence that follows starts nothing and ends nothing
    with pytest.raises(RuntimeError):
        det.end_now()


@pytest.mark.parametrize("early", [0, 600, 900])
def test_no_pause_events_when_early_end_is_off(early: int) -> None:
    options = PipelineOptions(end_of_turn_silence_ms=600, early_end_silence_ms=early)
    det = TurnDetector(options, sample_rate=16000)
    events = feed(det, "S" * 10 + "." * 40)
    assert [type(e) for _, e in events] == [SpeechStarted, SpeechEnded]


def test_the_words_can_be_offered_before_the_turn_may_end() -> None:
    """``transcribe_pause_ms`` below ``early_end_silence_ms`` offers the pause sooner (so that its
    transcript is ready when the turn may end); 0 (the default) offers it at ``early_end_silence_ms``;
    a longer setting is capped there."""
    for transcribe_ms, paused_after_ms in ((0, 240), (100, 100), (400, 240)):
        options = PipelineOptions(
            end_of_turn_silence_ms=600, early_end_silence_ms=240, min_speech_ms=20,
            transcribe_pause_ms=transcribe_ms,
        )  # fmt: skip
        events = feed(TurnDetector(options, sample_rate=16000), "S" * 10 + "." * 20)
        (t_pause, pause) = next((t, e) for t, e in events if isinstance(e, SpeechPaused))
        assert isinstance(pause, SpeechPaused)
        assert round((t_pause - pause.last_speech_at) * 1000) == paused_after_ms, transcribe_ms
