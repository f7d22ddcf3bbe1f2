"""Speculative transcription at a pause: a finished sentence ends the turn early, anything else waits."""

from __future__ import annotations

from dataclasses import replace

import pytest

from callgate.errors import ProviderError
from callgate.pipeline.frames import TurnEnded, UserTranscription
from callgate.pipeline.interfaces import Transcript
from callgate.pipeline.options import PipelineOptions
from callgate.pipeline.utterance import sounds_finished, trails_off
from callgate.providers.fake import PipelineHarness
from callgate.providers.fake.agent import FakeAgent
from callgate.providers.fake.clock import VirtualClock
from callgate.providers.fake.stt import FakeSTT

OPTS = PipelineOptions(
    end_of_turn_silence_ms=600, early_end_silence_ms=240, finished_sentence_silence_ms=0,
    transcribe_pause_ms=0,
)  # fmt: skip


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
    options = replace(OPTS, open_phrase_wait=False)
    async with PipelineHarness(
        transcripts=["I need an"], replies=["Sure."], options=options, stt_delay=0.1
    ) as h:
        await h.speak(1000)
        await h.silence(3000)
        assert h.agent.respond_calls == ["I need an"]
        assert len(h.stt.requests) == 1
        lat = latency_of_first_answer(h)
        assert lat.endpointing_ms == pytest.approx(600, abs=20)
        assert lat.stt_ms == pytest.approx(0, abs=1)  # transcribed during the silence


async def test_words_that_leave_the_sentence_open_let_the_pause_run_to_the_cap() -> None:
    # "I would like to book for" + 1000 ms of thought: past end_of_turn_silence_ms, short of max_wait_ms.
    clock = VirtualClock()
    stt = FakeSTT(clock, ["I would like to book for.", "I would like to book for next Tuesday."], delay=0.1)
    options = replace(OPTS, max_wait_ms=1500)
    async with PipelineHarness(clock=clock, stt=stt, replies=["Sure."], options=options) as h:
        await h.speak(1000)
        await h.silence(1000)
        assert h.agent.respond_calls == []
        await h.speak(800)
        await h.silence(3000)
        assert h.agent.respond_calls == ["I would like to book for next Tuesday."]
        assert [e.text for e in h.output.of_type(UserTranscription)] == [
            "I would like to book for next Tuesday."
        ]


async def test_a_caller_who_stays_silent_after_open_words_is_answered_at_the_cap() -> None:
    async with PipelineHarness(
        transcripts=["Can you tell me."], replies=["Sure."], options=replace(OPTS, max_wait_ms=1500),
        stt_delay=0.1,
    ) as h:  # fmt: skip
        await h.speak(1000)
        await h.silence(3000)
        assert h.agent.respond_calls == ["Can you tell me."]
        assert latency_of_first_answer(h).endpointing_ms == pytest.approx(1500, abs=20)


async def test_without_open_phrase_wait_the_silence_ends_a_turn_on_open_words() -> None:
    options = replace(OPTS, max_wait_ms=1500, open_phrase_wait=False)
    async with PipelineHarness(
        transcripts=["I would like to book for.", "Next Tuesday."], replies=["Sure.", "Fine."],
        options=options, stt_delay=0.1,
    ) as h:  # fmt: skip
        await h.speak(1000)
        await h.silence(1000)
        await h.speak(800)
        await h.silence(3000)
        # The silence ended the turn; the caller went on 450 ms later and cut the answer off, so it is
        # taken back and all the words are answered together (continue_window_ms).
        first = "I would like to book for."
        assert h.agent.respond_calls == [first, f"{first} Next Tuesday."]
        assert h.agent.taken_back == ["I would like to book for."]


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

    async def transcribe(self, pcm16: bytes, *, language: str = "en", prompt: str = "") -> Transcript:
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


@pytest.mark.parametrize(
    ("text", "open_"),
    [
        # cut off: a preposition, a clause opener, a verb missing its object, an indirect object alone
        ("We arrive on.", True),
        ("It was delivered in.", True),
        ("So the problem is that.", True),
        ("I think that.", True),
        ("I'd like to change.", True),
        ("I think I'll take.", True),
        ("I think I\u2019ll take.", True),
        ("Can you tell me.", True),
        ("Could you send us.", True),
        ("My email is.", True),
        ("I would like to book for.", True),
        ("Could I um.", True),
        ("Hmm...", True),
        # asking for a moment: what they went to find comes after the pause
        ("Let me check.", True),
        ("Hold on.", True),
        ("Okay, just a second.", True),
        ("Give me a minute.", True),
        ("Hang on, let me have a look.", True),
        ("Um, hang on let me check.", True),
        ("Okay. One moment.", True),
        # finished: phrasal verbs, nouns that look like verbs, a verb whose object is optional
        ("Can you come in.", False),
        ("Carry on.", False),
        ("I already checked in.", False),
        ("I like that.", False),
        ("Keep the change.", False),
        ("I'd like to cancel.", False),
        ("Let me check that for you.", False),
        ("Hold on, can you repeat that?", False),
        ("It only took a second.", False),
        ("It takes one second.", False),
        ("I'll be there in one minute.", False),
        ("Let me see the menu.", False),
        ("That's all I need.", False),
        ("Can you tell me?", False),
        ("Tell me!", False),
        ("Yes.", False),
        ("I need an appointment.", False),
    ],
)
def test_trailing_words_leave_a_sentence_open(text: str, open_: bool) -> None:
    assert trails_off(text) is open_
    assert sounds_finished(text) is (not open_ and not text.endswith("..."))


@pytest.mark.parametrize(
    "text",
    ["Yes, it is.", "I think we can.", "Yes I am.", "Okay then.", "I was.", "It would."],
)
def test_a_short_answer_ending_on_an_auxiliary_is_left_to_the_silence(text: str) -> None:
    assert trails_off(text) is False  # no longer wait: an answer may end so
    assert sounds_finished(text) is False  # no early end: "I was | wondering" goes on


@pytest.mark.parametrize(("text", "finished"), [("I think so.", True), ("If you like.", True)])
def test_words_that_close_after_some_words(text: str, finished: bool) -> None:
    assert sounds_finished(text) is finished
    assert trails_off(text.replace("think", "and").replace("you", "the")) is True  # "and so", "the like"


def test_the_english_word_rules_apply_to_english_only() -> None:
    assert trails_off("Mañana voy a.", language="en") is True  # "a" read as the English article
    assert trails_off("Mañana voy a.", language="es") is False
    assert trails_off("Quiero reservar para el...", language="es") is True  # an ellipsis in any language
    assert sounds_finished("Vorrei andare a.", language="it") is True
    assert sounds_finished("I would like to go to.", language="en-GB") is False


async def test_words_transcribed_before_the_early_end_end_the_turn_at_it() -> None:
    options = replace(OPTS, transcribe_pause_ms=150)
    async with PipelineHarness(
        transcripts=["I need an appointment."], replies=["Sure."], options=options, stt_delay=0.1
    ) as h:
        await h.speak(1000)
        await h.silence(3000)
        assert len(h.stt.requests) == 1
        # The guess starts at 160 ms of silence and is back 100 ms later: the turn ends at the first
        # frame both past 240 ms of silence and with the words known (not 340, a transcription later).
        assert latency_of_first_answer(h).endpointing_ms == pytest.approx(260, abs=1)


async def test_a_busy_stt_puts_the_early_transcription_off_to_the_early_end() -> None:
    # Another call's utterance waits for the same model: a 150 ms pause is not worth a transcription
    # now; it starts at early_end_silence_ms instead, and the turn ends a transcription later.
    options = replace(OPTS, transcribe_pause_ms=150)
    clock = VirtualClock()
    stt = FakeSTT(clock, ["I need an appointment."], delay=0.1)
    stt.backlogged = True
    async with PipelineHarness(clock=clock, stt=stt, replies=["Sure."], options=options) as h:
        await h.speak(1000)
        await h.silence(3000)
        assert len(stt.requests) == 1
        assert latency_of_first_answer(h).endpointing_ms == pytest.approx(340, abs=1)


async def test_a_short_pause_put_off_by_a_busy_stt_costs_no_transcription() -> None:
    options = PipelineOptions(end_of_turn_silence_ms=600, early_end_silence_ms=300, transcribe_pause_ms=100)
    clock = VirtualClock()
    stt = FakeSTT(clock, ["I need help with my booking."], delay=0.1)
    stt.backlogged = True
    async with PipelineHarness(clock=clock, stt=stt, replies=["Sure."], options=options) as h:
        await h.speak(600)
        await h.silence(240)  # past transcribe_pause_ms, short of early_end_silence_ms: nothing sent
        await h.speak(600)
        await h.silence(3000)
        assert h.agent.respond_calls == ["I need help with my booking."]
        assert len(stt.requests) == 1  # the whole utterance only


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


class ExpectsADay(FakeAgent):
    def expected_answer(self, text: str) -> bool:
        return "tomorrow" in text.lower()


@pytest.mark.parametrize(
    ("words", "endpointing_ms"),
    [
        ("Tomorrow.", 360),  # what the agent waits for: early_end_silence_ms (350, in whole frames)
        ("I need an appointment.", 460),  # only a finished sentence: finished_sentence_silence_ms
        ("I was thinking", 560),  # neither: end_of_turn_silence_ms
    ],
)
async def test_an_expected_answer_ends_the_turn_sooner_than_a_finished_sentence(
    words: str, endpointing_ms: float
) -> None:
    clock = VirtualClock()
    agent = ExpectsADay(clock, ["Booked."])
    async with PipelineHarness(
        clock=clock, transcripts=[words], agent=agent, stt_delay=0.1,
        options=replace(PipelineOptions(), open_phrase_wait=False),
    ) as h:  # fmt: skip
        await h.speak(800)
        await h.silence(2500)
        assert agent.respond_calls == [words]
        assert len(h.stt.requests) == 1  # the words of the 150 ms pause, reused
        assert latency_of_first_answer(h).endpointing_ms == pytest.approx(endpointing_ms, abs=1)


FIRST, REST = "I need an appointment.", "For my daughter next week."
WHOLE = "I need an appointment for my daughter next week."


@pytest.mark.parametrize(
    ("finished_sentence_ms", "heard", "answered"),
    [
        # The default waits out the pause: the utterance is transcribed whole, one turn, one answer.
        (450, [FIRST, WHOLE], [WHOLE]),
        # Ended at early_end_silence_ms, the finished sentence cuts the caller off: answered, then taken
        # back when they go on, and all the words answered together.
        (0, [FIRST, REST], [FIRST, f"{FIRST} {REST}"]),
    ],
)
async def test_a_caller_who_goes_on_after_a_complete_clause_is_not_cut_off(
    finished_sentence_ms: int, heard: list[str], answered: list[str]
) -> None:
    """A caller says "I need an appointment | for my daughter" with a 440 ms pause after the clause."""
    clock = VirtualClock()
    stt = FakeSTT(clock, heard, delay=0.1)
    options = PipelineOptions(finished_sentence_silence_ms=finished_sentence_ms)
    async with PipelineHarness(clock=clock, stt=stt, replies=["Sure.", "Of course."], options=options) as h:
        await h.speak(900)
        await h.silence(440)
        await h.speak(1200)
        await h.silence(3000)
        assert h.agent.respond_calls == answered
        assert h.agent.taken_back == answered[:-1]
