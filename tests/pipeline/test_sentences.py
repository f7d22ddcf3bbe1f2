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


def _stream(splitter: SentenceSplitter, text: str, step: int) -> list[str]:
    out: list[str] = []
    for i in range(0, len(text), step):
        out += splitter.push(text[i : i + step])
    rest = splitter.flush()
    return out + ([rest] if rest else [])


@pytest.mark.parametrize("step", [1, 3, 200])
def test_a_reply_s_first_sentence_is_cut_at_its_first_clause(step: int) -> None:
    text = (
        "We are open Monday to Friday from eight until six, and on Saturdays from nine until one. "
        "On Sundays, we are closed."
    )
    parts = _stream(SentenceSplitter(first_clause_chars=24), text, step)
    assert parts == [
        "We are open Monday to Friday from eight until six,",
        "and on Saturdays from nine until one.",
        "On Sundays, we are closed.",  # only the first sentence is cut
    ]


@pytest.mark.parametrize(
    ("text", "first"),
    [
        ("Sure, I can help with that today.", "Sure, I can help with that today."),  # comma too early
        ("Hello there. How are you, my friend?", "Hello there."),  # a short first sentence stays whole
        (
            "It costs 1,250 dollars for the whole year, tax included.",
            "It costs 1,250 dollars for the whole year,",
        ),
        ("Your appointment is booked - see you tomorrow at three.", "Your appointment is booked -"),
    ],
)
def test_first_clause_cut_needs_a_real_boundary_after_the_minimum(text: str, first: str) -> None:
    assert _stream(SentenceSplitter(first_clause_chars=24), text, 1)[0] == first


def test_each_reply_gets_its_own_first_clause_after_a_flush() -> None:
    splitter = SentenceSplitter(first_clause_chars=10)
    assert splitter.push("One two three four, five six.") == ["One two three four,"]
    assert splitter.flush() == "five six."
    assert splitter.push("Seven eight nine ten, eleven. ") == ["Seven eight nine ten,", "eleven."]
