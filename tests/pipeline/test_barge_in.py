"""Barge-in: the caller talks over the agent."""

from __future__ import annotations

import itertools

import pytest

from callgate.errors import ProviderError
from callgate.pipeline import (
    BotInterrupted,
    BotStoppedSpeaking,
    PipelineOptions,
    TurnEnded,
)
from callgate.pipeline.interfaces import Transcript
from callgate.pipeline.sentences import split_sentences
from callgate.providers.fake import FakeSTT, FakeTTS, PipelineHarness, ScriptedReply, VirtualClock

LONG = (
    "Thanks for calling. We are open from nine in the morning until six in the evening on weekdays, "
    "and from ten until two on Saturdays. Is there anything else I can help you with?"
)


def slow_tts(clock: VirtualClock) -> FakeTTS:
    # Faster than real time, but still synthesising when the caller barges in.
    return FakeTTS(
        clock, sample_rate=16000, ms_per_char=50, first_chunk_delay=0.1, chunk_ms=200, chunk_delay=0.1
    )


async def agent_talking(h: PipelineHarness, ms: int) -> None:
    await h.speak(500)
    while not h.output.audio:
        await h.silence(20)
    await h.silence(ms)


async def test_caller_words_hold_the_agent_at_once_then_cut_it_off() -> None:
    clock = VirtualClock()
    reply = ScriptedReply(LONG, first_token_delay=0.2, token_delay=0.1)
    async with PipelineHarness(
        clock=clock, transcripts=["hours?", "wait, and on Sunday?"], replies=[reply], tts=slow_tts(clock)
    ) as h:
        await agent_talking(h, 2500)  # sentence 2 is being synthesised, sentence 3 being written
        assert h.tts is not None
        assert h.tts.active == 1 and h.agent.active == 1  # both still working
        onset = clock.monotonic()
        await h.speak(400)
        # interruption_hold_ms (40) of speech holds the audio: nothing is sent after that frame.
        last_sent = max(t for t, _ in h.output.audio)
        assert last_sent - onset <= 0.04 + 1e-9
        assert h.tts.active == 1 or h.tts.completed >= 2  # the reply goes on underneath
        await h.silence(2000)

        (t_int,) = h.output.times_of(BotInterrupted)
        sent = [t for t, _ in h.output.audio]
        assert max(sent) == last_sent < t_int
        # In-flight work is cancelled, not left running (the agent finished writing during the hold).
        assert h.tts.active == 0 and h.agent.active == 0
        assert h.pipeline.metrics.interruptions == 1 and h.pipeline.metrics.barge_in_holds == 1

        names = h.output.names()
        i = names.index("BotInterrupted")
        assert names[i + 1 : i + 3] == ["BotStoppedSpeaking", "TurnEnded"]
        agent_turn = h.output.of_type(TurnEnded)[1].record
        assert agent_turn.role == "agent" and agent_turn.interrupted
        (barge_in,) = agent_turn.barge_ins
        assert (barge_in.outcome, barge_in.reason, barge_in.words) == (
            "interrupted",
            "words",
            "wait, and on Sunday?",
        )
        assert barge_in.held_ms == pytest.approx((t_int - onset - 0.04) * 1000, abs=25)
        full = " ".join(split_sentences(LONG))
        assert agent_turn.text and full.startswith(agent_turn.text) and agent_turn.text != full
        assert h.agent.interrupted_with == [agent_turn.text]
        assert h.agent.respond_calls == ["hours?", "wait, and on Sunday?"]

        # Which text was heard: whole sentences played, then words in proportion to played samples.
        played_ms = len(sent) * 20
        first = "Thanks for calling."
        assert played_ms > h.tts.duration_ms(first)
        partial_chars = (played_ms - 20 * -(-int(h.tts.duration_ms(first)) // 20)) / h.tts.ms_per_char
        second = split_sentences(LONG)[1]
        heard = agent_turn.text[len(first) + 1 :]
        assert second.startswith(heard)
        assert len(heard) <= partial_chars < len(heard) + len(second[len(heard) :].split(" ", 2)[1]) + 2


async def test_long_speech_cuts_the_agent_off_without_waiting_for_words() -> None:
    clock = VirtualClock()
    async with PipelineHarness(
        clock=clock, transcripts=["hours?", "no no no, listen"], replies=[LONG], tts=slow_tts(clock)
    ) as h:
        await agent_talking(h, 1500)
        onset = clock.monotonic()
        await h.speak(900)
        (t_int,) = h.output.times_of(BotInterrupted)
        assert t_int - onset == pytest.approx(0.7, abs=0.021)  # interruption_min_speech_ms
        assert max(t for t, _ in h.output.audio) - onset <= 0.06 + 1e-9
        await h.silence(1500)
        agent_turn = h.output.of_type(TurnEnded)[1].record
        assert [(b.outcome, b.reason) for b in agent_turn.barge_ins] == [("interrupted", "long_speech")]


async def test_the_interrupting_turn_is_answered_next() -> None:
    clock = VirtualClock()
    async with PipelineHarness(
        clock=clock, transcripts=["hours?", "stop, what about Sunday?"],
        replies=[LONG, "We are closed on Sundays."], tts=slow_tts(clock),
    ) as h:  # fmt: skip
        await agent_talking(h, 1500)
        await h.speak(800)
        await h.silence(4000)
        assert h.agent.respond_calls == ["hours?", "stop, what about Sunday?"]
        records = [e.record for e in h.output.of_type(TurnEnded)]
        assert [(r.role, r.interrupted) for r in records] == [
            ("user", False), ("agent", True), ("user", False), ("agent", False),
        ]  # fmt: skip
        assert records[-1].text == "We are closed on Sundays."


def full_reply_frames(tts: FakeTTS) -> int:
    return sum(-(-int(tts.duration_ms(s)) // 20) for s in split_sentences(LONG))


async def test_a_noise_burst_holds_the_agent_for_a_moment_and_it_resumes_where_it_stopped() -> None:
    clock = VirtualClock()
    async with PipelineHarness(clock=clock, transcripts=["hours?"], replies=[LONG], tts=slow_tts(clock)) as h:
        await agent_talking(h, 1000)
        onset = clock.monotonic()
        await h.speak(80)  # held at 40 ms; too short to start a turn (min_speech_ms 100)
        await h.silence(100)
        gap = [t for t, _ in h.output.audio if t > onset]
        assert gap and gap[0] - onset <= 0.04 + 1e-9
        await h.silence(15000)
        assert h.output.of_type(BotInterrupted) == []
        assert h.tts is not None and h.tts.cancelled == 0 and h.agent.cancelled == 0
        # Every frame of the reply was played once: it went on from the first frame not sent.
        assert len(h.output.audio) == full_reply_frames(h.tts)
        agent_turn = h.output.of_type(TurnEnded)[-1].record
        assert agent_turn.role == "agent" and not agent_turn.interrupted
        assert agent_turn.text == " ".join(split_sentences(LONG))
        (barge_in,) = agent_turn.barge_ins
        assert (barge_in.outcome, barge_in.reason) == ("resumed", "noise")
        assert barge_in.held_ms == pytest.approx(100, abs=21)  # from the hold to 60 ms of silence
        assert h.pipeline.metrics.barge_in_resumes == 1


async def test_a_cough_long_enough_to_be_speech_resumes_when_stt_hears_no_words() -> None:
    clock = VirtualClock()
    async with PipelineHarness(clock=clock, transcripts=["hours?"], replies=[LONG], tts=slow_tts(clock)) as h:
        await agent_talking(h, 1000)
        await h.speak(200)  # a turn starts; STT then hears nothing in it ("")
        await h.silence(15000)
        assert h.output.of_type(BotInterrupted) == []
        assert h.tts is not None and len(h.output.audio) == full_reply_frames(h.tts)
        records = [e.record for e in h.output.of_type(TurnEnded)]
        assert [r.role for r in records] == ["user", "agent"]
        assert [(b.outcome, b.reason) for b in records[1].barge_ins] == [("resumed", "no_words")]


@pytest.mark.parametrize("words", ["Mm-hmm.", "Uh huh.", "Yeah, okay.", "Right."])
async def test_a_backchannel_does_not_stop_the_agent(words: str) -> None:
    clock = VirtualClock()
    async with PipelineHarness(
        clock=clock, transcripts=["hours?", words], replies=[LONG, "never said"], tts=slow_tts(clock)
    ) as h:
        await agent_talking(h, 1000)
        await h.speak(400)
        await h.silence(15000)
        assert h.output.of_type(BotInterrupted) == []
        assert h.agent.respond_calls == ["hours?"]  # not a turn: the agent is not asked again
        assert h.tts is not None and len(h.output.audio) == full_reply_frames(h.tts)
        records = [e.record for e in h.output.of_type(TurnEnded)]
        assert [r.role for r in records] == ["user", "agent"]  # the backchannel is not a user turn
        (barge_in,) = records[1].barge_ins
        assert (barge_in.outcome, barge_in.reason, barge_in.words) == ("resumed", "backchannel", words)


@pytest.mark.parametrize(
    ("first", "again", "options", "takes_prompt", "resumed", "prompt"),
    [
        ("Up.", "Uh-huh.", PipelineOptions(), True, True, "Uh-huh. Mm-hmm. Yeah. Okay. Right."),
        ("Uh-uh.", "Mm-hmm.", PipelineOptions(), True, True, "Uh-huh. Mm-hmm. Yeah. Okay. Right."),
        ("Up.", "Mhm.", PipelineOptions(backchannels=("mhm", "sure thing")), True, True, "Mhm. Sure thing."),
        ("Up.", "Stop.", PipelineOptions(), True, False, "Uh-huh. Mm-hmm. Yeah. Okay. Right."),
        ("Up.", "Uh-huh.", PipelineOptions(), False, False, None),  # the STT takes no prompt
        ("Up.", "Uh-huh.", PipelineOptions(backchannels=()), True, False, None),  # every word interrupts
        ("Up and away.", "Uh-huh.", PipelineOptions(), True, False, None),  # more than two words
    ],
)
async def test_a_short_word_over_the_agent_is_heard_again_with_the_backchannels_as_prompt(
    first: str, again: str, options: PipelineOptions, takes_prompt: bool, resumed: bool, prompt: str | None
) -> None:
    """Whisper writes a short "uh-huh" as "Up." alone and as "Uh-huh." with the backchannels as its
    prompt; a prompt is not used the first time (it makes Whisper find "Okay." in silence). The words of
    the held pause are heard again at once, so the agent goes on there."""
    clock = VirtualClock()
    stt = FakeSTT(clock, ["hours?", first, again], delay=0.1, prompt=takes_prompt)
    async with PipelineHarness(
        clock=clock, stt=stt, replies=[LONG, "never said"], tts=slow_tts(clock), options=options
    ) as h:
        await agent_talking(h, 1000)
        await h.speak(400)
        await h.silence(15000)
        asked_again = [p for p in stt.prompts if p]
        assert asked_again == ([] if prompt is None else [prompt])
        assert bool(h.output.of_type(BotInterrupted)) is not resumed
        agent_turn = next(e.record for e in h.output.of_type(TurnEnded) if e.record.role == "agent")
        (barge_in,) = agent_turn.barge_ins
        if resumed:
            assert (barge_in.outcome, barge_in.reason, barge_in.words) == ("resumed", "backchannel", again)
            assert h.agent.respond_calls == ["hours?"]  # not a turn
            # At its pause's words (held at 40 ms of the 400, 80 ms into the pause, 100 ms of STT twice),
            # not when the turn would end.
            assert barge_in.held_ms == pytest.approx(400 - 40 + 80 + 100 + 100, abs=25)
        else:
            assert (barge_in.outcome, barge_in.reason, barge_in.words) == ("interrupted", "words", first)


async def test_a_second_hearing_that_fails_leaves_the_first_words() -> None:
    class PromptFails(FakeSTT):
        async def transcribe(self, pcm16: bytes, *, language: str = "en", prompt: str = "") -> Transcript:
            if prompt:
                raise ProviderError("the engine is down")
            return await super().transcribe(pcm16, language=language)

    clock = VirtualClock()
    stt = PromptFails(clock, ["hours?", "Up."], delay=0.1)
    async with PipelineHarness(clock=clock, stt=stt, replies=[LONG, "Sure."], tts=slow_tts(clock)) as h:
        await agent_talking(h, 1000)
        await h.speak(400)
        await h.silence(15000)
        agent_turn = next(e.record for e in h.output.of_type(TurnEnded) if e.record.role == "agent")
        (barge_in,) = agent_turn.barge_ins
        assert (barge_in.outcome, barge_in.reason, barge_in.words) == ("interrupted", "words", "Up.")
        assert h.pipeline.failure is None and h.agent.respond_calls == ["hours?", "Up."]


@pytest.mark.parametrize(
    ("options", "backlogged", "pause_s"),
    [
        (PipelineOptions(), False, 0.08),  # the defaults: a held pause's words come at 80 ms
        (PipelineOptions(), True, 0.08),  # even when other calls' work waits for the STT
        (PipelineOptions(held_pause_ms=0), False, 0.15),  # at transcribe_pause_ms, as any other pause
    ],
    ids=["held-pause", "held-pause-busy-stt", "transcribe-pause"],
)
async def test_a_backchannel_lets_the_agent_go_on_at_its_pause_not_at_the_end_of_the_turn(
    options: PipelineOptions, backlogged: bool, pause_s: float
) -> None:
    """The pause's words (transcribed at ``held_pause_ms`` while the agent is held) are enough: the agent
    does not wait for the caller's turn to end (``early_end_silence_ms``) before it goes on."""
    clock = VirtualClock()
    stt = FakeSTT(clock, ["hours?", "Uh-huh."], delay=0.1)
    async with PipelineHarness(
        clock=clock, stt=stt, replies=[LONG, "never said"], tts=slow_tts(clock), options=options
    ) as h:
        await agent_talking(h, 1000)
        stt.backlogged = backlogged
        onset = clock.monotonic()
        await h.speak(400)
        await h.silence(15000)
        sent = [t for t, _ in h.output.audio if t > onset]
        (held, went_on) = next((a, b) for a, b in itertools.pairwise(sent) if b - a > 0.021)
        assert held - onset <= 0.02 + 1e-9  # held at the frame that makes 40 ms of speech
        # Let go when the words of its pause come (100 ms of STT), not when the turn would end (350 ms
        # into the pause): the caller hears the agent wait 520 ms, not 700 or more.
        assert went_on - onset == pytest.approx(0.4 + pause_s + 0.1, abs=0.021)
        assert h.tts is not None and len(h.output.audio) == full_reply_frames(h.tts)  # nothing lost
        assert h.agent.respond_calls == ["hours?"]
        records = [e.record for e in h.output.of_type(TurnEnded)]
        assert [r.role for r in records] == ["user", "agent"]  # still no user turn
        (barge_in,) = records[1].barge_ins
        assert (barge_in.outcome, barge_in.reason, barge_in.words) == ("resumed", "backchannel", "Uh-huh.")
        assert barge_in.held_ms == pytest.approx((0.4 - 0.04 + pause_s + 0.1) * 1000, abs=21)


async def test_a_caller_who_goes_on_after_a_backchannel_holds_the_agent_again() -> None:
    clock = VirtualClock()
    words = "Yeah, wait, what about Sunday?"
    async with PipelineHarness(
        clock=clock, transcripts=["hours?", "Yeah.", words], replies=[LONG, "Closed on Sundays."],
        tts=slow_tts(clock), stt_delay=0.1, options=PipelineOptions(),
    ) as h:  # fmt: skip
        await agent_talking(h, 1000)
        await h.speak(300)
        await h.silence(300)  # the pause's words are a backchannel: the agent goes on
        went_on = clock.monotonic()
        assert any(t > went_on - 0.05 for t, _ in h.output.audio)
        onset = clock.monotonic()
        await h.speak(200)  # more speech in the same utterance: held again at its first frame
        assert max(t for t, _ in h.output.audio) - onset <= 0.02 + 1e-9
        await h.speak(600)  # 700 ms of speech in all: cut off
        await h.silence(3000)
        assert len(h.output.of_type(BotInterrupted)) == 1
        assert h.agent.respond_calls == ["hours?", words]
        agent = next(e.record for e in h.output.of_type(TurnEnded) if e.record.role == "agent")
        assert agent.interrupted
        assert [(b.outcome, b.reason) for b in agent.barge_ins] == [
            ("resumed", "backchannel"),
            ("interrupted", "long_speech"),
        ]


async def test_backchannels_are_configurable() -> None:
    clock = VirtualClock()
    async with PipelineHarness(
        clock=clock, transcripts=["hours?", "Yeah."], replies=[LONG, "So?"], tts=slow_tts(clock),
        options=PipelineOptions(early_end_silence_ms=0, backchannels=("mm-hmm",)),
    ) as h:  # fmt: skip
        await agent_talking(h, 1000)
        await h.speak(400)
        await h.silence(3000)
        assert len(h.output.of_type(BotInterrupted)) == 1  # "yeah" is not on this agent's list
        assert h.agent.respond_calls == ["hours?", "Yeah."]


async def test_interruptions_disabled_the_agent_finishes_and_the_speech_is_ignored() -> None:
    clock = VirtualClock()
    async with PipelineHarness(
        clock=clock, transcripts=["hours?", "never used"], replies=[LONG], tts=slow_tts(clock),
        options=PipelineOptions(allow_interruptions=False),
    ) as h:  # fmt: skip
        await agent_talking(h, 1000)
        await h.speak(1000)
        await h.silence(15000)
        assert h.output.of_type(BotInterrupted) == []
        assert h.pipeline.metrics.interruptions == 0
        assert h.tts is not None
        assert h.tts.cancelled == 0 and h.agent.cancelled == 0
        records = [e.record for e in h.output.of_type(TurnEnded)]
        assert [(r.role, r.interrupted) for r in records] == [("user", False), ("agent", False)]
        assert records[1].text == " ".join(split_sentences(LONG))
        assert len(h.stt.requests) == 1  # the speech over the agent was never transcribed
        assert h.agent.respond_calls == ["hours?"]
        total_ms = sum(20 * -(-int(h.tts.duration_ms(s)) // 20) for s in split_sentences(LONG))
        assert len(h.output.audio) * 20 == total_ms


async def test_speech_while_the_agent_thinks_cancels_the_pending_reply() -> None:
    async with PipelineHarness(
        transcripts=["hello", "sorry, I mean goodbye"],
        replies=[ScriptedReply("Hi!", first_token_delay=2.0), "Bye."],
    ) as h:
        await h.speak(500)
        await h.silence(1200)  # turn ended, transcript in; the agent is "thinking" (2 s)
        assert h.agent.respond_calls == ["hello"] and h.agent.active == 1
        await h.speak(800)
        assert h.agent.active == 0 and h.agent.cancelled == 1
        assert h.agent.interrupted_with == [""]
        assert h.output.audio == []
        await h.silence(3000)
        assert h.agent.respond_calls == ["hello", "sorry, I mean goodbye"]
        records = [e.record for e in h.output.of_type(TurnEnded)]
        # The cancelled reply was never heard: its turn has no words, only why the agent stopped.
        assert [(r.role, r.text, r.interrupted) for r in records] == [
            ("user", "hello", False),
            ("agent", "", True),
            ("user", "sorry, I mean goodbye", False),
            ("agent", "Bye.", False),
        ]
        assert [(b.outcome, b.reason) for b in records[1].barge_ins] == [("interrupted", "long_speech")]


async def test_stop_mid_reply_cancels_everything_and_records_what_was_heard() -> None:
    clock = VirtualClock()
    h = PipelineHarness(clock=clock, transcripts=["hours?"], replies=[LONG], tts=slow_tts(clock))
    async with h:
        await agent_talking(h, 1500)
        frames_before = len(h.output.audio)
    assert h.tts is not None
    assert h.tts.active == 0 and h.agent.active == 0
    await clock.advance(2.0)
    assert len(h.output.audio) == frames_before
    last = h.output.of_type(TurnEnded)[-1].record
    assert last.role == "agent" and last.interrupted
    assert last.text.startswith("Thanks for calling.")
    assert "BotInterrupted" not in h.output.names()
    assert h.output.of_type(BotStoppedSpeaking) == []
    await h.pipeline.stop()  # idempotent


@pytest.mark.parametrize(
    ("words", "held_wait_ms", "expected"),
    [
        ("Uh-huh.", 500, [("resumed", "slow_words")]),  # goes on after 500 ms; the words change nothing
        ("Wait, what about Sunday?", 500, [("resumed", "slow_words"), ("interrupted", "words")]),
        ("Uh-huh.", 0, [("resumed", "backchannel")]),  # 0: held until the words come
    ],
)
async def test_a_held_agent_goes_on_when_the_callers_words_are_slow(
    words: str, held_wait_ms: int, expected: list[tuple[str, str]]
) -> None:
    """A slow STT (Whisper's 30 s path on an unclear word, a loaded machine) must not leave the caller
    in dead air: ``held_wait_ms`` after the caller's turn ended, the agent goes on; words that turn out
    to be an interruption still cut it off when they come, and a backchannel is still no turn."""
    clock = VirtualClock()
    stt = FakeSTT(clock, ["hours?", words], delay=2.0)
    options = PipelineOptions(held_wait_ms=held_wait_ms)
    async with PipelineHarness(
        clock=clock, stt=stt, replies=[LONG, "On Sunday we are closed."], tts=slow_tts(clock), options=options
    ) as h:
        await agent_talking(h, 1000)
        onset = clock.monotonic()
        await h.speak(400)
        await h.silence(15000)
        sent = [t for t, _ in h.output.audio if t > onset]
        (held, went_on) = next((a, b) for a, b in itertools.pairwise(sent) if b - a > 0.021)
        # Held at 40 ms of speech; the turn ends 550 ms into the silence (no guess came in time).
        gap = went_on - held
        if held_wait_ms:
            assert gap == pytest.approx(0.4 - 0.04 + 0.55 + 0.5, abs=0.05)
        else:
            # waited for the words: those of the held pause (80 ms in), 2 s of STT later
            assert gap == pytest.approx(0.4 - 0.04 + 0.08 + 2.0, abs=0.05)
        agent_turn = next(e.record for e in h.output.of_type(TurnEnded) if e.record.role == "agent")
        assert [(b.outcome, b.reason) for b in agent_turn.barge_ins] == expected
        interrupted = len(expected) == 2
        assert bool(h.output.of_type(BotInterrupted)) is interrupted
        assert h.agent.respond_calls == (["hours?", words] if interrupted else ["hours?"])


class DoubtfulSTT(FakeSTT):
    """Slow to hear the caller alone (Whisper's 30 s path on an unclear word), quick with a prompt."""

    def __init__(self, clock: VirtualClock, first: list[str], prompted: str) -> None:
        super().__init__(clock, first, delay=1.0)
        self.prompted = prompted

    async def transcribe(self, pcm16: bytes, *, language: str = "en", prompt: str = "") -> Transcript:
        if not prompt:
            return await super().transcribe(pcm16, language=language)
        self.prompts.append(prompt)
        await self.clock.sleep(0.1)
        return Transcript(text=self.prompted, language=language)


@pytest.mark.parametrize(
    ("first", "prompted", "expected", "went_on_s"),
    [
        # The held pause's words are asked for 80 ms into it; slow after 200 ms: heard again with the
        # prompt, 100 ms: a backchannel, and the agent goes on there, not 550 + 500 ms after the words.
        ("Up.", "Uh-huh.", [("resumed", "backchannel", "Uh-huh.")], 0.4 - 0.04 + 0.08 + 0.2 + 0.1),
        # The first hearing still decides: an interruption cuts the agent off when it comes (1 s).
        (
            "No, stop it now.", "Okay.",
            [("resumed", "backchannel", "Okay."), ("interrupted", "words", "No, stop it now.")],
            0.4 - 0.04 + 0.08 + 0.2 + 0.1,
        ),
        # Heard again but no backchannel: the agent waits (held_wait_ms after the turn ended).
        (
            "Up.", "Stop.", [("resumed", "slow_words", ""), ("interrupted", "words", "Up.")],
            0.4 - 0.04 + 0.55 + 0.5,
        ),
    ],
)  # fmt: skip
async def test_slow_words_over_the_agent_are_heard_early_with_the_prompt(
    first: str, prompted: str, expected: list[tuple[str, str, str]], went_on_s: float
) -> None:
    """What holds the agent is most likely a backchannel: when the STT is slow to hear it, it is heard
    again with the backchannels as prompt beside the first hearing, and if that says backchannel the
    agent goes on at once (the caller does not hear it stop for a second at an "uh-huh")."""
    clock = VirtualClock()
    stt = DoubtfulSTT(clock, ["hours?", first], prompted)
    async with PipelineHarness(
        clock=clock, stt=stt, replies=[LONG, "Sorry, go on."], tts=slow_tts(clock), options=PipelineOptions()
    ) as h:
        stt.delay = 0.1
        await agent_talking(h, 1000)
        stt.delay = 1.0
        onset = clock.monotonic()
        await h.speak(400)
        await h.silence(15000)
        sent = [t for t, _ in h.output.audio if t > onset]
        (held, went_on) = next((a, b) for a, b in itertools.pairwise(sent) if b - a > 0.021)
        assert went_on - held == pytest.approx(went_on_s, abs=0.05)
        agent_turn = next(e.record for e in h.output.of_type(TurnEnded) if e.record.role == "agent")
        assert [(b.outcome, b.reason, b.words) for b in agent_turn.barge_ins] == expected
        interrupted = expected[-1][0] == "interrupted"
        assert bool(h.output.of_type(BotInterrupted)) is interrupted
        assert h.agent.respond_calls == (["hours?", first] if interrupted else ["hours?"])
        assert stt.prompts.count("Uh-huh. Mm-hmm. Yeah. Okay. Right.") >= 1
        assert h.pipeline.failure is None


async def test_a_failing_early_hearing_changes_nothing() -> None:
    class PromptFails(DoubtfulSTT):
        async def transcribe(self, pcm16: bytes, *, language: str = "en", prompt: str = "") -> Transcript:
            if prompt:
                self.prompts.append(prompt)
                raise ProviderError("the engine is down")
            return await super().transcribe(pcm16, language=language)

    clock = VirtualClock()
    stt = PromptFails(clock, ["hours?", "Up."], "never heard")
    async with PipelineHarness(
        clock=clock, stt=stt, replies=[LONG, "Sorry, go on."], tts=slow_tts(clock), options=PipelineOptions()
    ) as h:
        stt.delay = 0.1
        await agent_talking(h, 1000)
        stt.delay = 1.0
        await h.speak(400)
        await h.silence(15000)
        assert stt.prompts  # it was asked, and failed
        agent_turn = next(e.record for e in h.output.of_type(TurnEnded) if e.record.role == "agent")
        assert [(b.outcome, b.reason, b.words) for b in agent_turn.barge_ins] == [
            ("resumed", "slow_words", ""),
            ("interrupted", "words", "Up."),
        ]
        assert h.pipeline.failure is None and h.agent.respond_calls == ["hours?", "Up."]
