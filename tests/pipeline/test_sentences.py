from __future__ import annotations

import pytest

from callgate.pipeline.sentences import SentenceSplitter, split_sentences


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Hello there. How are you?", ["Hello there.", "How are you?"]),
        ("Wow! Really? Yes.", ["Wow!", "Really?", "Yes."]),
        ("Dr. Smith will see you at 3.30 today. Bring your card.",
         ["Dr. Smith will see you at 3.30 today.", "Bring your card."]),
        ("Mrs. Jones, e.g. the owner, said so. Fine.", ["Mrs. Jones, e.g. the owner, said so.", "Fine."]),
        ("The price is $4.99 per item. Total: 12.5 kg.", ["The price is $4.99 per item.", "Total: 12.5 kg."]),
        ("J. R. R. Tolkien wrote it. Next.", ["J. R. R. Tolkien wrote it.", "Next."]),
        ('He said "stop." Then left.', ['He said "stop."', "Then left."]),
        ("Wait... what? Okay.", ["Wait...", "what?", "Okay."]),
        ("Press 1. Then press 2.", ["Press 1.", "Then press 2."]),
        ("First line\nSecond line", ["First line", "Second line"]),
        ("No ending punctuation", ["No ending punctuation"]),
        ("", []),
    ],
)  # fmt: skip
def test_split(text: str, expected: list[str]) -> None:
    assert split_sentences(text) == expected


def test_streaming_token_by_token_gives_the_same_sentences() -> None:
    text = "Dr. Who arrives at 3.30 p.m. sharp. Is that OK? Great! See you then."
    for step in (1, 2, 3, 7):
        splitter = SentenceSplitter()
        out: list[str] = []
        for i in range(0, len(text), step):
            out += splitter.push(text[i : i + step])
        rest = splitter.flush()
        if rest:
            out.append(rest)
        assert out == split_sentences(text), step


def test_a_sentence_is_released_as_soon_as_it_is_certainly_complete() -> None:
    splitter = SentenceSplitter()
    assert splitter.push("Hello there.") == []  # could still be "there.com" or an abbreviation
    assert splitter.push(" How") == ["Hello there."]
    assert splitter.flush() == "How"
    assert splitter.flush() is None


def test_long_text_without_an_end_is_cut_at_a_comma_or_space() -> None:
    text = "word, " * 30 + "and more words without any end at all " * 5
    parts = split_sentences(text, max_chars=60)
    assert all(len(p) <= 60 for p in parts)
    assert " ".join(parts).split() == text.split()
    assert parts[0].endswith(",")
