from __future__ import annotations

from callgate.pipeline.spoken import SpokenTracker, truncate_words


def test_truncate_words_keeps_only_whole_words_within_the_fraction() -> None:
    text = "one two three four"  # 18 chars
    assert truncate_words(text, 0.0) == ""
    assert truncate_words(text, 3 / 18) == "one"
    assert truncate_words(text, 6 / 18) == "one"
    assert truncate_words(text, 7 / 18) == "one two"
    assert truncate_words(text, 0.99) == "one two three"
    assert truncate_words(text, 1.0) == text


def test_spoken_text_counts_whole_sentences_then_a_proportional_part() -> None:
    tracker = SpokenTracker()
    a = tracker.add("Hello there.", audio=True)
    b = tracker.add("How can I help you today?", audio=True)
    tracker.add_samples(a, 1000)
    tracker.complete(a)
    tracker.add_samples(b, 2500)
    tracker.complete(b)
    assert tracker.spoken_text() == ""
    tracker.played(a, 1000)
    assert tracker.spoken_text() == "Hello there."
    tracker.played(b, 1000)  # 40 % of 25 chars = 10 -> "How can I"
    assert tracker.spoken_text() == "Hello there. How can I"
    assert tracker.full_text == "Hello there. How can I help you today?"


def test_text_only_sentences_count_once_delivered() -> None:
    tracker = SpokenTracker()
    a = tracker.add("Hi.", audio=False)
    tracker.add("Bye.", audio=False)
    assert not tracker.anything_played
    tracker.delivered(a)
    assert tracker.spoken_text() == "Hi."


def test_a_sentence_still_being_synthesised_is_sized_from_the_reply_speech_rate() -> None:
    tracker = SpokenTracker(sample_rate=16000)
    a = tracker.add("Hello there.", audio=True)  # 12 chars
    tracker.add_samples(a, 12 * 800)
    tracker.complete(a)
    tracker.played(a, 12 * 800)
    b = tracker.add("How can I help you today?", audio=True)  # 25 chars, ~20 000 samples expected
    tracker.add_samples(b, 16000)  # synthesis is ahead of playout but not finished
    tracker.played(b, 8000)  # 40 %
    assert tracker.spoken_text() == "Hello there. How can I"


def test_before_any_sentence_finished_the_default_speaking_rate_is_used() -> None:
    tracker = SpokenTracker(sample_rate=14000)  # 1000 samples per char at 14 chars/s
    a = tracker.add("one two three four", audio=True)
    tracker.add_samples(a, 17000)
    tracker.played(a, 8000)
    assert tracker.spoken_text() == "one two"
