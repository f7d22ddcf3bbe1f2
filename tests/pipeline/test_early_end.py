"""Speculative transcription at a pause: a finished sentence ends the turn early, anything else waits."""

from __future__ import annotations

import pytest

from callgate.errors import ProviderError
from callgate.pipeline.frames import TurnEnded, UserTranscription
from callgate.pipeline.interfaces import Transcript
from callgate.pipeline.options import PipelineOptions
from callgate.pipeline.utterance import sounds_finished
from callgate.providers.fake import PipelineHarness
from callgate.providers.fake.clock import VirtualClock
from callgate.providers.fake.stt import FakeSTT

OPTS = PipelineOptions(end_of_turn_silence_ms=600, early_end_silence_ms=240)


def latency_of_first_answer(h: PipelineHarness):  # type: ignore[no-untyped-def]
    agent = next(e.record for e in h.output.of_type(TurnEnded) if e.record.role == "agent")
    assert agent.latency is not None
    return agent.latency


async def test_a_finished_sentence_ends_the_turn_at_the_pause() -> None:
    async with PipelineHarness(
        transcripts=["I need an appointment."], replies=["Sure."], options=OPTS, stt_delay=0.1
    ) as h:
        await h.speak(1000)
        await h.silence(3000)
        assert h.agent.respond_calls == ["I need an appointment."]
        assert len(h.stt.requests) == 1  # the guess was the transcript
        lat = latency_of_first_answer(h)
        # 240 ms of silence, then 100 ms of STT: decided at the first frame after the guess.
        assert lat.endpointing_ms == pytest.approx(340, abs=20)
        assert lat.stt_ms == pytest.approx(0, abs=1)


async def test_an_unfinished_guess_waits_for_the_silence_and_is_reused() -> None:
    async with PipelineHarness(
        transcripts=["I need an"], replies=["Sure."], options=OPTS, stt_delay=0.1
    ) as h:
        await h.speak(1000)
        await h.silence(3000)
        assert h.agent.respond_calls == ["I need an"]
        assert len(h.stt.requests) == 1
        lat = latency_of_first_answer(h)
        assert lat.endpointing_ms == pytest.approx(600, abs=20)
        assert lat.stt_ms == pytest.approx(0, abs=1)  # transcribed during the silence


async def test_a_caller_who_goes_on_after_an_early_end_starts_a_new_turn() -> None:
    async with PipelineHarness(
        transcripts=["I need help.", "With my booking."],
        replies=["Sure.", "Of course."],
        options=OPTS,
        stt_delay=0.1,
    ) as h:
        await h.speak(600)
        await h.silence(400)  # the guess is back at 340 ms: a finished sentence ends the turn
        await h.speak(600)
        await h.silence(3000)
        said = [e.text for e in h.output.of_type(UserTranscription)]
        assert said == ["I need help.", "With my booking."]
        assert len(h.stt.requests) == 2


async def test_a_pause_shorter_than_the_guess_keeps_one_turn() -> None:
    clock = VirtualClock()
    # A cancelled guess takes no transcript from the script: the one entry is the whole utterance's.
    stt = FakeSTT(clock, ["I need an appointment for tomorrow."], delay=0.3)
    async with PipelineHarness(clock=clock, stt=stt, replies=["Sure."], options=OPTS) as h:
        await h.speak(600)
        await h.silence(300)  # the guess (300 ms) is not back when speech resumes
        await h.speak(600)
        await h.silence(3000)
        assert h.agent.respond_calls == ["I need an appointment for tomorrow."]
        assert [e.text for e in h.output.of_type(UserTranscription)] == [
            "I need an appointment for tomorrow."
        ]
        assert len(stt.requests) == 2  # the dropped guess, then the whole utterance


class GuessFails(FakeSTT):
    calls = 0

    async def transcribe(self, pcm16: bytes, *, language: str = "en") -> Transcript:
        self.calls += 1
        if self.calls == 1:
            await self.clock.sleep(self.delay)
            raise ProviderError("stt crashed")
        return await super().transcribe(pcm16, language=language)


async def test_a_failed_guess_is_transcribed_again_at_the_end() -> None:
    clock = VirtualClock()
    stt = GuessFails(clock, ["Book me in."], delay=0.1)
    async with PipelineHarness(clock=clock, stt=stt, replies=["Sure."], options=OPTS) as h:
        await h.speak(800)
        await h.silence(3000)
        assert h.agent.respond_calls == ["Book me in."]
        assert h.pipeline.metrics.stt_failures == 0
        lat = latency_of_first_answer(h)
        assert lat.endpointing_ms == pytest.approx(600, abs=20)  # no early end without a guess


@pytest.mark.parametrize(
    ("text", "finished"),
    [
        ("I need an appointment.", True),
        ("What are your opening hours?", True),
        ("Thank you.", True),
        ("Yes!", True),
        ("Who is it for?", True),
        ("I would like to book an.", False),
        ("I was thinking and.", False),
        ("So um.", False),
        ("Well...", False),
        ("I need an appointment", False),
        ("", False),
        (". . .", False),
    ],
)
def test_sounds_finished(text: str, finished: bool) -> None:
    assert sounds_finished(text) is finished


async def test_words_transcribed_before_the_early_end_end_the_turn_at_it() -> None:
    options = PipelineOptions(end_of_turn_silence_ms=600, early_end_silence_ms=240, transcribe_pause_ms=150)
    async with PipelineHarness(
        transcripts=["I need an appointment."], replies=["Sure."], options=options, stt_delay=0.1
    ) as h:
        await h.speak(1000)
        await h.silence(3000)
        assert len(h.stt.requests) == 1
        # The guess starts at 160 ms of silence and is back 100 ms later: the turn ends at the first
        # frame both past 240 ms of silence and with the words known (not 340, a transcription later).
        assert latency_of_first_answer(h).endpointing_ms == pytest.approx(260, abs=1)


async def test_a_pause_shorter_than_the_early_end_keeps_the_turn_even_with_the_words_known() -> None:
    options = PipelineOptions(end_of_turn_silence_ms=600, early_end_silence_ms=300, transcribe_pause_ms=100)
    clock = VirtualClock()
    # The first guess ("I need help.") is back at 200 ms of silence, but the caller goes on at 240 ms.
    stt = FakeSTT(clock, ["I need help.", "I need help with my booking."], delay=0.1)
    async with PipelineHarness(clock=clock, stt=stt, replies=["Sure."], options=options) as h:
        await h.speak(600)
        await h.silence(240)
        await h.speak(600)
        await h.silence(3000)
        assert h.agent.respond_calls == ["I need help with my booking."]
