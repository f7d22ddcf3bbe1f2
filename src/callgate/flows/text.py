"""Text helpers for flows: normalising transcripts, number words, ``{{placeholder}}`` rendering."""

from __future__ import annotations

import re
from collections.abc import Mapping
from difflib import SequenceMatcher

__all__ = [
    "fuzzy_equal",
    "normalize",
    "number_to_words",
    "ordinal_to_words",
    "parse_number_words",
    "render",
]

_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")

UNITS = {
    "zero": 0, "oh": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
    "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14,
    "fifteen": 15, "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19,
}  # fmt: skip
TENS = {"twenty": 20, "thirty": 30, "forty": 40, "fifty": 50}
ORDINALS = {
    "first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5, "sixth": 6, "seventh": 7,
    "eighth": 8, "ninth": 9, "tenth": 10, "eleventh": 11, "twelfth": 12, "thirteenth": 13,
    "fourteenth": 14, "fifteenth": 15, "sixteenth": 16, "seventeenth": 17, "eighteenth": 18,
    "nineteenth": 19, "twentieth": 20, "thirtieth": 30,
}  # fmt: skip
_UNIT_WORDS = {v: k for k, v in UNITS.items() if k not in ("zero", "oh")}
_TENS_WORDS = {v: k for k, v in TENS.items()}
_ORDINAL_WORDS = {v: k for k, v in ORDINALS.items()}


def normalize(text: str) -> str:
    """Lower case, ``p.m.`` → ``pm``, digits split from letters (``3pm`` → ``3 pm``), no punctuation
    except ``:`` inside times and ``'`` inside words."""
    text = text.lower().replace("\u2019", "'")
    text = re.sub(r"\b([ap])\.\s?m\b\.?", r"\1m", text)
    text = re.sub(r"(\d)(am|pm)\b", r"\1 \2", text)
    text = text.replace("-", " ")
    text = re.sub(r"(?<!\d):|:(?!\d)", " ", text)
    text = re.sub(r"[^\w:' ]+", " ", text)
    text = re.sub(r"(?<!\w)'|'(?!\w)", " ", text)
    return " ".join(text.split())


def parse_number_words(words: list[str], start: int) -> tuple[int, int] | None:
    """A cardinal number (0-99, digits or words) at ``words[start]``: (value, words used)."""
    if start >= len(words):
        return None
    word = words[start]
    if word.isdigit():
        return int(word), 1
    if word in TENS:
        value = TENS[word]
        if start + 1 < len(words) and words[start + 1] in UNITS and 0 < UNITS[words[start + 1]] < 10:
            return value + UNITS[words[start + 1]], 2
        return value, 1
    if word in UNITS and word != "oh":
        return UNITS[word], 1
    return None


def number_to_words(n: int) -> str:
    """0-99 as words ("forty-five"); larger numbers as digits."""
    if n == 0:
        return "zero"
    if n < 20:
        return _UNIT_WORDS[n]
    if n < 100:
        tens, unit = divmod(n, 10)
        return _TENS_WORDS[tens * 10] + (f"-{_UNIT_WORDS[unit]}" if unit else "")
    return str(n)


def ordinal_to_words(n: int) -> str:
    """1-31 as ordinal words ("twenty-third")."""
    if n in _ORDINAL_WORDS:
        return _ORDINAL_WORDS[n]
    tens, unit = divmod(n, 10)
    return f"{_TENS_WORDS[tens * 10]}-{_ORDINAL_WORDS[unit]}"


def fuzzy_equal(a: str, b: str, *, threshold: float = 0.85) -> bool:
    """Same word, allowing small transcription slips in longer words ("appointments", "apointment")."""
    if a == b:
        return True
    if min(len(a), len(b)) < 5:
        return False
    return SequenceMatcher(None, a, b).ratio() >= threshold


def render(template: str, values: Mapping[str, str]) -> str:
    """Replace ``{{name}}`` with ``values[name]``; unknown names become empty (never read aloud)."""
    rendered = _PLACEHOLDER.sub(lambda m: values.get(m.group(1), ""), template)
    rendered = rendered.replace("..", ".")  # "three p.m." at the end of a sentence
    return " ".join(rendered.split())
