"""A caller who goes on right after their turn ended: the answer is taken back and all the words are
answered together (``continue_window_ms``), on the virtual clock."""

from __future__ import annotations

import random
from dataclasses import replace
from typing import Any

from callgate.pipeline import BotInterrupted, Metrics, PipelineOptions, TurnEnded
from callgate.providers.fake import FakeTTS, PipelineHarness, ScriptedReply, VirtualClock

FIRST, REST = "I need an appointment.", "For my daughter next week."
QUICK = ScriptedReply("What would you like to book it for?", first_token_delay=0.0)


def records(h: PipelineHarness) -> list[tuple[str, str, bool]]:
    return [(e.record.role, e.record.text, e.record.interrupted) for e in h.output.of_type(TurnEnded)]


def cut_off(h: PipelineHarness) -> list[tuple[str, str]]:
    """What the caller's sounds did to the agent's first answer."""
    first = next(e.record for e in h.output.of_type(TurnEnded) if e.record.role == "agent")
    return [(b.outcome, b.reason) for b in first.barge_ins]


def harness(
    replies: list[ScriptedReply | str], transcripts: tuple[str, ...] = (FIRST, REST), **kw: Any
) -> PipelineHarness:
    """The turn ends at 540 ms of silence, its words 50 ms later, the agent's audio starts at ~830 ms
    and the caller hears a word per ~100 ms of it."""
    clock = kw.pop("clock", None) or VirtualClock()
    tts = kw.pop("tts", None) or FakeTTS(clock, ms_per_char=20)
    return PipelineHarness(
        transcripts=transcripts, replies=replies, stt_delay=0.05, clock=clock, tts=tts, **kw
    )


async def test_speech_right_after_the_turn_ended_continues_it() -> None:
    async with harness([QUICK, "Booked."]) as h:
        await h.speak(800)
        await h.silence(950)  # the turn ends at 540 ms of silence; the agent starts its answer at 830
        assert h.output.audio  # ... and the caller hears its start
        await h.speak(500)  # 410 ms after the end: the caller goes on
        await h.silence(3000)
        assert len(h.output.of_type(BotInterrupted)) == 1
        assert h.agent.respond_calls == [FIRST, f"{FIRST} {REST}"]
        assert h.agent.taken_back == [FIRST]
        assert h.pipeline.metrics.turns_taken_back == 1
        turns = records(h)
        assert [(role, interrupted) for role, _, interrupted in turns] == [
            ("user", False), ("agent", True), ("user", False), ("agent", False),
        ]  # fmt: skip
        # The transcript keeps what was said; the script taken back answers the whole turn.
        assert turns[2][1] == REST and turns[3][1] == QUICK.text
        cut = h.output.of_type(TurnEnded)[1].record
        assert [(b.outcome, b.reason, b.words) for b in cut.barge_ins] == [("interrupted", "continued", REST)]


async def test_a_long_continuation_cuts_the_agent_off_before_its_words_are_known() -> None:
    async with harness([QUICK, "Booked."]) as h:
        await h.speak(800)
        await h.silence(950)
        await h.speak(1200)  # interruption_min_speech_ms (700) cuts the agent off while the caller talks
        assert len(h.output.of_type(BotInterrupted)) == 1
        await h.silence(3000)
        assert cut_off(h) == [("interrupted", "continued")]
        assert h.agent.respond_calls == [FIRST, f"{FIRST} {REST}"]


async def test_while_the_agent_is_still_thinking_the_words_are_joined_too() -> None:
    slow = ScriptedReply("Sure.", first_token_delay=2.0)
    async with harness([slow, "Booked."]) as h:
        await h.speak(800)
        await h.silence(600)
        await h.speak(500)
        await h.silence(3000)
        assert h.agent.respond_calls == [FIRST, f"{FIRST} {REST}"]
        assert h.agent.cancelled == 1
        # Nothing of the answer was heard: its turn has no words, but says why the agent stopped.
        assert records(h)[:3] == [("user", FIRST, False), ("agent", "", True), ("user", REST, False)]
        assert cut_off(h) == [("interrupted", "continued")]
        assert h.pipeline.metrics.agent_turns == 1  # the answer the caller heard, and its metrics only
        assert [e.data["turn"]["total_ms"] is not None for e in h.output.of_type(Metrics)] == [True]


async def test_speech_later_than_the_window_is_a_new_turn() -> None:
    async with harness(
        [QUICK, "Booked."], options=PipelineOptions(early_end_silence_ms=0, continue_window_ms=300)
    ) as h:
        await h.speak(800)
        await h.silence(950)  # 410 ms after the end
        await h.speak(500)
        await h.silence(3000)
        assert cut_off(h) == [("interrupted", "words")]
        assert h.agent.respond_calls == [FIRST, REST] and h.agent.taken_back == []
        assert h.pipeline.metrics.turns_taken_back == 0


async def test_an_answer_heard_to_the_end_is_not_taken_back() -> None:
    clock = VirtualClock()
    tts = FakeTTS(clock, ms_per_char=20, first_chunk_delay=0.0)
    reply = ScriptedReply("Okay.", first_token_delay=0.0)
    async with harness([reply, "Booked."], clock=clock, tts=tts) as h:
        await h.speak(800)
        await h.silence(1000)  # "Okay." (100 ms) is over before the caller goes on, 450 ms after the end
        await h.speak(500)
        await h.silence(3000)
        assert h.output.of_type(BotInterrupted) == []
        assert h.agent.respond_calls == [FIRST, REST]
        assert [text for _, text, _ in records(h)] == [FIRST, "Okay.", REST, "Booked."]


async def test_a_backchannel_right_after_the_turn_lets_the_agent_go_on() -> None:
    async with harness([QUICK, "never said"], (FIRST, "Yeah.")) as h:
        await h.speak(800)
        await h.silence(950)
        await h.speak(300)
        await h.silence(4000)
        assert h.output.of_type(BotInterrupted) == []
        assert h.agent.respond_calls == [FIRST] and h.agent.taken_back == []
        assert cut_off(h) == [("resumed", "backchannel")]


async def test_off_when_the_window_is_zero() -> None:
    async with harness(
        [QUICK, "Booked."], options=PipelineOptions(early_end_silence_ms=0, continue_window_ms=0)
    ) as h:
        await h.speak(800)
        await h.silence(950)
        await h.speak(500)
        await h.silence(3000)
        assert h.agent.respond_calls == [FIRST, REST]
        assert cut_off(h) == [("interrupted", "words")]


async def test_an_agent_that_cannot_take_back_answers_the_new_words_alone() -> None:
    from callgate.pipeline.interfaces import AgentData

    # A reply whose script carries something after its words (here data) stands for an answer with a
    # side effect: the fake refuses to take such a script back, like a flow that started a request.
    said = ScriptedReply(QUICK.text, first_token_delay=0.0, after=(AgentData({"booked": True}),))
    async with harness([said, "Booked."]) as h:
        await h.speak(800)
        await h.silence(950)
        await h.speak(500)
        await h.silence(3000)
        assert h.agent.respond_calls == [FIRST, REST] and h.agent.taken_back == []
        assert cut_off(h) == [("interrupted", "continued")]
        assert h.pipeline.metrics.turns_taken_back == 0


async def test_a_continuation_with_no_words_leaves_later_turns_alone() -> None:
    # The caller's sound right after the turn cuts the agent off (700 ms of it) but holds no words; the
    # next words, seconds later, are a turn of their own and take nothing back.
    async with harness([QUICK, "Fine."], (FIRST, "", REST)) as h:
        await h.speak(800)
        await h.silence(950)
        await h.speak(900)
        await h.silence(2500)
        assert cut_off(h) == [("interrupted", "continued")]
        await h.speak(500)
        await h.silence(2000)
        assert h.agent.respond_calls == [FIRST, REST] and h.agent.taken_back == []


EAGER = PipelineOptions(
    early_end_silence_ms=240, finished_sentence_silence_ms=0, transcribe_pause_ms=0,
    end_of_turn_silence_ms=600,
)  # fmt: skip


async def caller_pausing_twice(backoff_ms: int) -> PipelineHarness:
    """Two turns, each with a 380 ms pause after a complete clause: the early end (240 ms, the words
    50 ms later) cuts the first; the caller goes on and the answer is taken back. Then the same again."""
    texts = (
        "I need an appointment.",
        "For my daughter.",
        "Her name is Emma.",
        "Emma Johnson.",
        "Emma Johnson.",
    )
    h = harness(
        ["Sure.", "Sure.", "Thanks.", "Thanks."],
        texts,
        options=replace(EAGER, early_end_backoff_ms=backoff_ms),
    )
    async with h:
        for _ in range(2):
            await h.speak(600)
            await h.silence(380)
            await h.speak(600)
            await h.silence(3000)
    return h


async def test_a_caller_who_went_on_is_given_more_time_for_the_rest_of_the_call() -> None:
    h = await caller_pausing_twice(100)
    # The first pause ended the turn (early end 240 ms); the caller went on 400 ms after their last
    # speech frame, so the early end is now 100 ms past that pause, and the second pause no longer
    # ends the turn.
    assert h.agent.taken_back == ["I need an appointment."]
    assert h.pipeline.early_end_silence_ms == 400 + 100
    assert len(h.agent.respond_calls) == 3  # the cut, the first turn whole, the second turn
    eager = await caller_pausing_twice(0)
    assert eager.agent.taken_back == ["I need an appointment.", "Her name is Emma."]  # cut again
    assert len(eager.agent.respond_calls) == 4
    assert eager.pipeline.early_end_silence_ms == 240


async def test_patience_stops_short_of_the_end_of_the_turn() -> None:
    options = replace(EAGER, early_end_backoff_ms=1000)
    async with harness(["Sure.", "Sure."], options=options) as h:
        await h.speak(600)
        await h.silence(380)
        await h.speak(600)
        await h.silence(3000)
        assert h.pipeline.metrics.turns_taken_back == 1
        assert h.pipeline.early_end_silence_ms == 600 - 40  # pauses are still transcribed early


async def timeline(seed: int) -> PipelineHarness:
    """Speech and pauses of random lengths (some right at the window's edge), typed messages among
    them; checks the invariants that hold whatever happened."""
    rng = random.Random(seed)
    words = [f"Part {i}." for i in range(40)]
    delays = [0.0, 0.1, 0.3]
    replies = [ScriptedReply(f"Answer {i}.", first_token_delay=rng.choice(delays)) for i in range(40)]
    early, window = rng.choice([0, 240]), rng.choice([300, 500])
    options = PipelineOptions(early_end_silence_ms=early, transcribe_pause_ms=0, continue_window_ms=window)
    async with harness(replies, tuple(words), options=options) as h:
        for _ in range(8):
            await h.speak(rng.choice([120, 300, 700, 1200]))
            await h.silence(rng.choice([200, 380, 560, 800, 1050, 2000]))
            if rng.random() < 0.15:
                h.pipeline.push_text("typed")
        await h.silence(4000)
    assert h.pipeline.failure is None, seed
    metrics = h.pipeline.metrics
    assert metrics.turns_taken_back == len(h.agent.taken_back) <= metrics.interruptions, seed
    calls = h.agent.respond_calls
    for taken in h.agent.taken_back:  # asked again with the words that followed it
        at = calls.index(taken)
        assert any(later.startswith(f"{taken} ") for later in calls[at + 1 :]), (seed, taken, calls)
    return h


async def test_random_timelines_keep_the_take_back_invariants() -> None:
    taken = [len((await timeline(seed)).agent.taken_back) for seed in range(24)]
    # The invariants were checked on real take-backs, in many of the timelines.
    assert sum(taken) >= 5 and sum(1 for n in taken if n) >= 5, taken
