"""Slot parsers: pull a date, time, name, yes/no, number or free text out of a caller's words.

Yes/no and numbers are heard in English, or in Spanish for an agent whose ``language`` is Spanish
(:mod:`callgate.flows.spanish`); dates, times and names in English only.

Every parser takes normalised text (:func:`callgate.flows.text.normalize`) and ``asked``: True when
the agent has just asked for this slot, which lets loose answers count ("three" for a time, "Ann"
for a name). Each returns a :class:`SlotValue`: the value stored on the call (ISO date, ``HH:MM``…)
and the way it is read back aloud ("tomorrow", "three thirty p.m.").
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import date, timedelta

from callgate.flows import spanish
from callgate.flows.schema import SlotType
from callgate.flows.text import ORDINALS, TENS, number_to_words, ordinal_to_words, parse_number_words

__all__ = ["SlotValue", "parse_slot", "parse_yes_no", "speaks_spanish"]


@dataclass(frozen=True, slots=True)
class SlotValue:
    value: str | int | bool
    spoken: str


_WEEKDAYS = [d.lower() for d in calendar.day_name]
_MONTHS = [m.lower() for m in calendar.month_name][1:]
_YES = {"yes", "yeah", "yep", "yup", "ya", "sure", "correct", "right", "ok", "okay", "fine", "perfect",
        "absolutely", "definitely", "certainly", "great", "good", "affirmative", "exactly",
        "alright"}  # fmt: skip
_NO = {"no", "nope", "nah", "not", "don't", "dont", "never", "wrong", "incorrect", "cancel", "negative",
       "isn't", "wasn't", "doesn't", "change"}  # fmt: skip
_NAME_LEADS = re.compile(r"\b(?:my name is|my name's|name is|this is|i am|i'm|it's|call me|it is)\s+(.+)")
_NAME_STOP = {"and", "please", "thanks", "thank", "calling", "here", "looking", "trying", "wondering",
              "not", "just", "fine", "good", "sorry", "from", "with", "the", "a", "speaking", "i", "um",
              "uh", "so", "well", "yes", "yeah", "hi", "hello", "to", "about", "for", "my", "an", "at",
              "in", "on", "of", "is", "it", "that", "this", "going", "having", "ok"}  # fmt: skip
_FILLERS = {"um", "uh", "er", "erm", "well", "so", "oh", "yes", "yeah", "hi", "hello", "it's", "its"}


def speaks_spanish(language: str) -> bool:
    """True for ``es`` and ``es-*`` (BCP 47): the yes/no and number slots hear Spanish words."""
    return language.lower().split("-", 1)[0] == "es"


def parse_yes_no(text: str, *, language: str = "en") -> SlotValue | None:
    """Whichever of a yes-word and a no-word comes first ("that's not right" → no); Spanish words for
    a Spanish agent ("sí", "de acuerdo", "no")."""
    if speaks_spanish(language):
        said = spanish.yes_no(text)
        return None if said is None else SlotValue(said, "sí" if said else "no")
    for word in text.split():
        if word in _NO:
            return SlotValue(False, "no")
        if word in _YES:
            return SlotValue(True, "yes")
    return None


# --------------------------------------------------------------------------- dates


def _spoken_date(day: date, today: date) -> str:
    spoken = f"{calendar.day_name[day.weekday()]} the {ordinal_to_words(day.day)}"
    return spoken if day.month == today.month else f"{spoken} of {calendar.month_name[day.month]}"


def _day_of_month(words: list[str], i: int) -> tuple[int, int] | None:
    """An ordinal at ``words[i]`` ("5th", "fifth", "twenty third"): (day, words used)."""
    word = words[i]
    if m := re.fullmatch(r"(\d{1,2})(?:st|nd|rd|th)", word):
        return int(m.group(1)), 1
    if word in ORDINALS:
        return ORDINALS[word], 1
    if word in TENS and i + 1 < len(words) and ORDINALS.get(words[i + 1], 10) < 10:
        return TENS[word] + ORDINALS[words[i + 1]], 2
    return None


def _next_with_day(today: date, day: int, month: int | None) -> date | None:
    year, first_month = today.year, month or today.month
    for offset in range(13):
        m = (first_month - 1 + (12 * offset if month else offset)) % 12 + 1
        y = year + (first_month - 1 + (12 * offset if month else offset)) // 12
        if day <= calendar.monthrange(y, m)[1] and (candidate := date(y, m, day)) >= today:
            return candidate
    return None


def parse_date(text: str, *, today: date, asked: bool = False) -> SlotValue | None:
    words = text.split()
    if "day after tomorrow" in text:
        return SlotValue((today + timedelta(days=2)).isoformat(), "the day after tomorrow")
    if "tomorrow" in words:
        return SlotValue((today + timedelta(days=1)).isoformat(), "tomorrow")
    if "today" in words or "tonight" in words or "this afternoon" in text or "this morning" in text:
        return SlotValue(today.isoformat(), "today")
    for i, word in enumerate(words):
        if word.rstrip("s") in _WEEKDAYS:  # "monday", "mondays"
            ahead = (_WEEKDAYS.index(word.rstrip("s")) - today.weekday()) % 7 or 7
            day = today + timedelta(days=ahead)
            return SlotValue(day.isoformat(), _spoken_date(day, today))
        month = _MONTHS.index(word) + 1 if word in _MONTHS else None
        ordinal = _day_of_month(words, i)
        after_the = i > 0 and words[i - 1] == "the"
        if month is not None and i + 1 < len(words):  # "march 3rd", "march third", "march 3"
            ordinal = _day_of_month(words, i + 1) or parse_number_words(words, i + 1)
        elif ordinal is not None and i + 2 < len(words) and words[i + 1] == "of" and words[i + 2] in _MONTHS:
            month = _MONTHS.index(words[i + 2]) + 1  # "3rd of march"
        elif ordinal is not None and not (after_the or word[0].isdigit() or asked):
            ordinal = None  # "just a second"
        if ordinal is not None and 1 <= ordinal[0] <= 31:
            found = _next_with_day(today, ordinal[0], month)
            if found is not None:
                return SlotValue(found.isoformat(), _spoken_date(found, today))
    return None


# --------------------------------------------------------------------------- times

_RELATIVE = {"half": 30, "quarter": 15}


def _meridiem(words: list[str], after: int, text: str) -> str | None:
    if after < len(words) and words[after] in ("am", "pm"):
        return words[after]
    if "morning" in text:
        return "am"
    if any(w in text for w in ("afternoon", "evening", "tonight")):
        return "pm"
    return None


def _to_24h(hour: int, meridiem: str | None) -> int:
    if meridiem == "pm":
        return hour % 12 + 12
    if meridiem == "am":
        return hour % 12
    # Nothing said: assume office hours ("at three" → 3 p.m., "at nine" → 9 a.m.).
    return hour + 12 if 1 <= hour <= 7 else hour


def spoken_time(hour: int, minute: int) -> str:
    if (hour, minute) == (12, 0):
        return "noon"
    if (hour, minute) == (0, 0):
        return "midnight"
    h12 = hour % 12 or 12
    minutes = (
        ""
        if minute == 0
        else f" oh {number_to_words(minute)}"
        if minute < 10
        else f" {number_to_words(minute)}"
    )
    return f"{number_to_words(h12)}{minutes} {'a.m.' if hour < 12 else 'p.m.'}"


def _time(hour: int, minute: int) -> SlotValue | None:
    if not (0 <= hour < 24 and 0 <= minute < 60):
        return None
    return SlotValue(f"{hour:02d}:{minute:02d}", spoken_time(hour, minute))


def parse_time(text: str, *, asked: bool = False) -> SlotValue | None:
    words = text.split()
    if "noon" in words or "midday" in words:
        return _time(12, 0)
    if "midnight" in words:
        return _time(0, 0)
    for i, word in enumerate(words):
        if m := re.fullmatch(r"(\d{1,2}):(\d{2})", word):  # "3:30", "15:30"
            hour, minute = int(m.group(1)), int(m.group(2))
            return _time(_to_24h(hour, _meridiem(words, i + 1, text)) if hour <= 12 else hour, minute)
        if word in _RELATIVE or (word.isdigit() or word in TENS or word in ("five", "ten")):
            # "half past two", "quarter to four", "ten past three", "twenty five to six"
            rel = (_RELATIVE[word], 1) if word in _RELATIVE else parse_number_words(words, i)
            if rel is not None and i + rel[1] < len(words) and words[i + rel[1]] in ("past", "to", "after"):
                j = i + rel[1]
                hour_at = parse_number_words(words, j + 1)
                if hour_at is not None and 1 <= hour_at[0] <= 12:
                    hour = _to_24h(hour_at[0], _meridiem(words, j + 1 + hour_at[1], text))
                    if words[j] == "to":
                        return _time((hour - 1) % 24, 60 - rel[0])
                    return _time(hour, rel[0])
        number = parse_number_words(words, i)
        if number is None or not 0 <= number[0] <= 23:
            continue
        hour, end = number[0], i + number[1]
        minute = 0
        if end < len(words) and words[end] == "oh":  # "three oh five"
            minute_at = parse_number_words(words, end + 1)
            if minute_at is not None and minute_at[0] < 10:
                minute, end = minute_at[0], end + 1 + minute_at[1]
        elif (minute_at := parse_number_words(words, end)) is not None and 10 <= minute_at[0] < 60:
            minute, end = minute_at[0], end + minute_at[1]  # "three thirty", "three forty five"
        meridiem = _meridiem(words, end, text)
        marked = end < len(words) and words[end] in ("am", "pm", "o'clock", "oclock")
        if marked or (i > 0 and words[i - 1] == "at") or asked:
            return _time(_to_24h(hour, meridiem) if hour <= 12 else hour, minute)
    return None


# --------------------------------------------------------------------------- the rest


def _name(text: str, *, asked: bool) -> SlotValue | None:
    m = _NAME_LEADS.search(text)
    rest = m.group(1).split() if m else (text.split() if asked and len(text.split()) <= 4 else [])
    name: list[str] = []
    for word in rest:
        if not name and word in _FILLERS:
            continue
        if word in _NAME_STOP or not word.isalpha():
            break  # "I'm calling about…" is no name
        name.append(word)
        if len(name) == 3:
            break
    if not name:
        return None
    spoken = " ".join(w.capitalize() for w in name)
    return SlotValue(spoken, spoken)


def parse_slot(
    kind: SlotType, text: str, *, original: str, today: date, asked: bool, language: str = "en"
) -> SlotValue | None:
    """Parse ``text`` (normalised) for a slot of type ``kind``; ``original`` is the raw transcript.
    ``language`` (the agent's, BCP 47): yes/no and numbers are heard in English or Spanish; dates,
    times and names in English only."""
    if kind is SlotType.DATE:
        return parse_date(text, today=today, asked=asked)
    if kind is SlotType.TIME:
        return parse_time(text, asked=asked)
    if kind is SlotType.NAME:
        return _name(text, asked=asked)
    if not asked:  # the rest only make sense as an answer to the question just asked
        return None
    if kind is SlotType.YES_NO:
        return parse_yes_no(text, language=language)
    if kind is SlotType.NUMBER:
        words = text.split()
        in_spanish = speaks_spanish(language)
        for i in range(len(words)):
            number = spanish.parse_number(words, i) if in_spanish else parse_number_words(words, i)
            if number is not None:
                spoken = spanish.spoken_number(number[0]) if in_spanish else number_to_words(number[0])
                return SlotValue(number[0], spoken)
        return None
    stripped = original.strip()
    return SlotValue(stripped, stripped) if stripped else None
