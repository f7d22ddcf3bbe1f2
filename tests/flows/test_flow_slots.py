"""Slot parsers on the way callers (and Whisper transcripts) say dates, times and names."""

from __future__ import annotations

from datetime import date

import pytest

from callgate.flows.schema import SlotType
from callgate.flows.slots import parse_date, parse_slot, parse_time, parse_yes_no
from callgate.flows.text import normalize, render

SUNDAY = date(2026, 11, 22)


@pytest.mark.parametrize(
    ("said", "value", "spoken"),
    [
        ("tomorrow at three pm", "15:00", "three p.m."),
        ("tomorrow at 3 p.m.", "15:00", "three p.m."),
        ("at 3pm.", "15:00", "three p.m."),
        ("3:30", "15:30", "three thirty p.m."),
        ("10:15 am", "10:15", "ten fifteen a.m."),
        ("half past two", "14:30", "two thirty p.m."),
        ("quarter to four", "15:45", "three forty-five p.m."),
        ("ten past nine in the morning", "09:10", "nine ten a.m."),
        ("noon please", "12:00", "noon"),
        ("at nine", "09:00", "nine a.m."),
        ("three oh five pm", "15:05", "three oh five p.m."),
        ("eleven o'clock", "11:00", "eleven a.m."),
    ],
)
def test_times(said: str, value: str, spoken: str) -> None:
    parsed = parse_time(normalize(said))
    assert parsed is not None and (parsed.value, parsed.spoken) == (value, spoken)


def test_bare_numbers_are_times_only_when_asked() -> None:
    assert parse_time(normalize("three thirty")) is None
    assert parse_time(normalize("three thirty"), asked=True) is not None
    assert parse_time(normalize("the 5th")) is None


@pytest.mark.parametrize(
    ("said", "value", "spoken"),
    [
        ("tomorrow", "2026-11-23", "tomorrow"),
        ("today", "2026-11-22", "today"),
        ("the day after tomorrow", "2026-11-24", "the day after tomorrow"),
        ("on Friday", "2026-11-27", "Friday the twenty-seventh"),
        ("sunday", "2026-11-29", "Sunday the twenty-ninth"),
        ("the 5th", "2026-12-05", "Saturday the fifth of December"),
        ("on the twenty third", "2026-11-23", "Monday the twenty-third"),
        ("March 3rd", "2027-03-03", "Wednesday the third of March"),
        ("the 3rd of March", "2027-03-03", "Wednesday the third of March"),
    ],
)
def test_dates(said: str, value: str, spoken: str) -> None:
    parsed = parse_date(normalize(said), today=SUNDAY)
    assert parsed is not None and (parsed.value, parsed.spoken) == (value, spoken)


def test_not_dates() -> None:
    assert parse_date(normalize("just a second"), today=SUNDAY) is None
    assert parse_date(normalize("three pm"), today=SUNDAY) is None


@pytest.mark.parametrize(
    ("said", "answer"),
    [("yes please", True), ("Yeah, that's right.", True), ("no", False), ("That's not right", False),
     ("nope", False), ("sure", True), ("hmm", None)],
)  # fmt: skip
def test_yes_no(said: str, answer: bool | None) -> None:
    parsed = parse_yes_no(normalize(said))
    assert (parsed.value if parsed else None) == answer


@pytest.mark.parametrize(
    ("said", "asked", "name"),
    [("My name is Ann Lee", False, "Ann Lee"), ("It's John Smith, thanks", False, "John Smith"),
     ("Bob", True, "Bob"), ("Bob", False, None), ("I'm calling about my appointment", False, None)],
)  # fmt: skip
def test_names(said: str, asked: bool, name: str | None) -> None:
    parsed = parse_slot(SlotType.NAME, normalize(said), original=said, today=SUNDAY, asked=asked)
    assert (parsed.value if parsed else None) == name


def test_number_and_text_need_the_question() -> None:
    assert parse_slot(SlotType.NUMBER, "two", original="two", today=SUNDAY, asked=False) is None
    number = parse_slot(SlotType.NUMBER, "twenty two", original="Twenty-two", today=SUNDAY, asked=True)
    assert number is not None and number.value == 22
    text = parse_slot(SlotType.TEXT, "a sore knee", original="A sore knee.", today=SUNDAY, asked=True)
    assert text is not None and text.value == "A sore knee."


def test_render() -> None:
    assert render("At {{time}}. Bye {{who}}!", {"time": "three p.m."}) == "At three p.m. Bye !"


@pytest.mark.parametrize(
    ("said", "answer"),
    [("Sí, por favor.", True), ("si", True), ("Claro que sí", True), ("Vale.", True), ("De acuerdo", True),
     ("Por supuesto", True), ("No, gracias.", False), ("No está bien", False), ("Eso no es correcto", False),
     ("Nunca", False), ("Hmm, a ver", None), ("yes", None)],
)  # fmt: skip
def test_yes_no_in_spanish(said: str, answer: bool | None) -> None:
    parsed = parse_yes_no(normalize(said), language="es-ES")
    assert (parsed.value if parsed else None) == answer
    assert parse_yes_no(normalize("sí"), language="en") is None  # an English agent hears English only


@pytest.mark.parametrize(
    ("said", "value"),
    [("Dos", 2), ("quince", 15), ("Dieciséis", 16), ("dieciseis", 16), ("veintitrés personas", 23),
     ("Treinta y cinco", 35), ("noventa y nueve", 99), ("cuarenta", 40), ("Somos 12", 12), ("cien", 100),
     ("una", 1)],
)  # fmt: skip
def test_numbers_in_spanish(said: str, value: int) -> None:
    parsed = parse_slot(
        SlotType.NUMBER, normalize(said), original=said, today=SUNDAY, asked=True, language="es"
    )
    assert parsed is not None and (parsed.value, parsed.spoken) == (value, str(value))
    assert (
        parse_slot(SlotType.NUMBER, normalize(said), original=said, today=SUNDAY, asked=False, language="es")
        is None
    )
