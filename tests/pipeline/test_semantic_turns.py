"""Semantic end of turn: the end-of-turn model ends a finished turn at the first pause and lets a caller
who is mid-thought pause up to ``max_wait_ms``; a flow's expected answer ends the turn at the pause too."""

from __future__ import annotations

import pytest

from callgate.errors import ProviderError
from callgate.pipeline.frames import TurnEnded, TurnLatency
from callgate.pipeline.options import PipelineOptions
from callgate.pipeline.turns import SpeechPaused, TurnDetector
from callgate.providers.fake import FakeAgent, FakeEndOfTurn, PipelineHarness, VirtualClock

SEMANTIC = PipelineOptions(
    semantic=True, early_end_silence_ms=150, end_of_turn_silence_ms=550, max_wait_ms=1500
)


def first_answer_latency(h: PipelineHarness) -> TurnLatency:
    agent = next(e.record for e in h.output.of_type(TurnEnded) if e.record.role == "agent")
    assert agent.latency is not None
    return agent.latency


async def test_the_model_ends_a_finished_turn_at_the_first_pause() -> None:
    clock = VirtualClock()
    model = FakeEndOfTurn(clock, [0.9], delay=0.04)
    async with PipelineHarness(
        clock=clock, transcripts=["I need an appointment"], replies=["Sure."], options=SEMANTIC,
        stt_delay=0.1, end_of_turn=model,
    ) as h:  # fmt: skip
        await h.speak(1000)
        await h.silence(2000)
        assert h.agent.respond_calls == ["I need an appointment"]  # the model, not punctuation, decided
        assert len(model.requests) == 1
        assert len(model.requests[0]) == (1000 + 160) * 32  # the speech and the pause so far (whole frames)
        # 150 ms of pause, then the words of the same pause (100 ms of STT, the model took 40): decided
        # at the next frame. The words are the final transcript, so the answer waits for nothing more.
        assert first_answer_latency(h).endpointing_ms == pytest.approx(260, abs=1)


@pytest.mark.parametrize("words", ["I'd like to book for", "My number is", "So I was wondering um..."])
async def test_words_that_trail_off_overrule_a_finished_verdict(words: str) -> None:
    """Synthetic or flat speech can sound finished mid-sentence; the words at the pause can tell."""
    clock = VirtualClock()
    model = FakeEndOfTurn(clock, default=0.9, delay=0.04)
    async with PipelineHarness(
        clock=clock, transcripts=[words, f"{words} next Tuesday."], replies=["Sure."], options=SEMANTIC,
        stt_delay=0.1, end_of_turn=model,
    ) as h:  # fmt: skip
        await h.speak(800)
        await h.silence(700)  # past the early end and past end_of_turn_silence_ms: mid-thought
        assert h.agent.respond_calls == []
        await h.speak(600)
        await h.silence(2000)
        assert h.agent.respond_calls == [f"{words} next Tuesday."]  # finished: the model's verdict stands
        assert first_answer_latency(h).endpointing_ms == pytest.approx(260, abs=1)


async def test_a_caller_mid_thought_may_pause_up_to_the_cap() -> None:
    clock = VirtualClock()
    model = FakeEndOfTurn(clock, [0.1, 0.2], delay=0.04)
    async with PipelineHarness(
        # The first entry is the guess at the first pause (dropped when the caller goes on).
        clock=clock, transcripts=["I'd like to book for um", "I'd like to book for um next Tuesday."],
        replies=["Sure."],
        options=SEMANTIC, stt_delay=0.1, end_of_turn=model,
    ) as h:  # fmt: skip
        await h.speak(800)
        await h.silence(900)  # longer than end_of_turn_silence_ms: silence alone would cut in here
        assert h.agent.respond_calls == []
        await h.speak(600)
        await h.silence(1400)
        assert h.agent.respond_calls == []  # still mid-thought, within the cap
        await h.silence(500)
        assert h.agent.respond_calls == ["I'd like to book for um next Tuesday."]
        assert len(model.requests) == 2
        await h.silence(1500)
        assert first_answer_latency(h).endpointing_ms == pytest.approx(1500, abs=1)


async def test_without_a_verdict_the_silence_decides() -> None:
    clock = VirtualClock()
    model = FakeEndOfTurn(clock, [ProviderError("model crashed")], delay=0.04)
    async with PipelineHarness(
        clock=clock, transcripts=["Hello."], replies=["Hi."], options=SEMANTIC, stt_delay=0.1,
        end_of_turn=model,
    ) as h:  # fmt: skip
        await h.speak(600)
        await h.silence(2000)
        assert h.agent.respond_calls == ["Hello."]
        # With the model asked for, punctuation no longer ends the turn early: the silence did.
        assert first_answer_latency(h).endpointing_ms == pytest.approx(560, abs=1)  # 550 ms, in whole frames


async def test_semantic_without_a_model_is_silence_only() -> None:
    async with PipelineHarness(
        transcripts=["I need an appointment"], replies=["Sure."], options=SEMANTIC, stt_delay=0.1
    ) as h:
        await h.speak(600)
        await h.silence(2000)
        assert h.agent.respond_calls == ["I need an appointment"]
        assert first_answer_latency(h).endpointing_ms == pytest.approx(560, abs=1)  # 550 ms, in whole frames


class ExpectsADate(FakeAgent):
    def expected_answer(self, text: str) -> bool:
        return "tomorrow" in text.lower()


@pytest.mark.parametrize(("words", "early"), [("Tomorrow", True), ("I was thinking maybe", False)])
async def test_an_expected_answer_ends_the_turn_at_the_pause(words: str, early: bool) -> None:
    clock = VirtualClock()
    model = FakeEndOfTurn(clock, default=0.1)  # the model thinks the caller goes on
    agent = ExpectsADate(clock, ["Booked."])
    async with PipelineHarness(
        clock=clock, transcripts=[words], agent=agent, options=SEMANTIC, stt_delay=0.1,
        end_of_turn=model,
    ) as h:  # fmt: skip
        await h.speak(500)
        await h.silence(2500)
        assert agent.respond_calls == [words]
        expected = 150 + 100 if early else 1500  # the pause, then STT; or the cap
        assert first_answer_latency(h).endpointing_ms == pytest.approx(expected, abs=21)


def test_the_detector_cuts_vad_hang_over_by_level() -> None:
    options = PipelineOptions(end_of_turn_silence_ms=300, early_end_silence_ms=100, min_speech_ms=20)
    loud, quiet = b"\x00\x20" * 320, b"\x10\x00" * 320  # -12 dBFS, -66 dBFS
    det = TurnDetector(options, sample_rate=16000)
    events = []
    for i, frame in enumerate([loud] * 10 + [quiet] * 20):
        # VAD still says speech for 5 frames (100 ms) after the voice stops.
        event = det.process(frame, 1.0 if i < 15 else 0.0, i * 0.02)
        if event is not None:
            events.append((round(i * 0.02, 3), event))
    pause = next((t, e) for t, e in events if isinstance(e, SpeechPaused))
    assert pause[1].last_speech_at == pytest.approx(0.18)  # the last loud frame, not VAD's last
    off = TurnDetector(PipelineOptions(end_of_turn_silence_ms=300, hangover_cut_db=0), sample_rate=16000)
    for i, frame in enumerate([loud] * 10 + [quiet] * 5):
        off.process(frame, 1.0, i * 0.02)
    assert off.silence_ms == 0
