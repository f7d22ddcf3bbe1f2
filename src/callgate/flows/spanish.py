"""Spanish words for flows' yes/no and number slots (an agent whose ``language`` is ``es`` or ``es-*``).

Transcripts come with or without accents ("sí"/"si", "dieciséis"/"dieciseis"): words are compared with
their accents folded away. Dates, times and names are still parsed in English only (docs/flows.md).
"""

from __future__ import annotations

import unicodedata

__all__ = ["NO", "YES", "fold", "parse_number", "spoken_number", "yes_no"]

YES = frozenset(
    {"si", "claro", "vale", "correcto", "exacto", "exactamente", "perfecto", "bien", "ok", "okay",
     "afirmativo", "cierto", "efectivamente", "venga", "dale"}
)  # fmt: skip
"""Folded words that say yes ("sí", "claro", "vale"); phrases such as "de acuerdo" are in _YES_PHRASES."""
NO = frozenset({"no", "nunca", "incorrecto", "negativo", "cancelar", "cancela", "tampoco", "jamas"})
_YES_PHRASES = (("de", "acuerdo"), ("por", "supuesto"), ("desde", "luego"), ("esta", "bien"))

_UNITS = {
    "cero": 0, "un": 1, "uno": 1, "una": 1, "dos": 2, "tres": 3, "cuatro": 4, "cinco": 5, "seis": 6,
    "siete": 7, "ocho": 8, "nueve": 9, "diez": 10, "once": 11, "doce": 12, "trece": 13, "catorce": 14,
    "quince": 15, "dieciseis": 16, "diecisiete": 17, "dieciocho": 18, "diecinueve": 19, "veinte": 20,
    "veintiun": 21, "veintiuno": 21, "veintiuna": 21, "veintidos": 22, "veintitres": 23,
    "veinticuatro": 24, "veinticinco": 25, "veintiseis": 26, "veintisiete": 27, "veintiocho": 28,
    "veintinueve": 29, "cien": 100,
}  # fmt: skip
_TENS = {"treinta": 30, "cuarenta": 40, "cincuenta": 50, "sesenta": 60, "setenta": 70, "ochenta": 80,
         "noventa": 90}  # fmt: skip


def fold(word: str) -> str:
    """``word`` without accents ("dieciséis" → "dieciseis", "sí" → "si")."""
    return "".join(c for c in unicodedata.normalize("NFD", word) if unicodedata.category(c) != "Mn")


def yes_no(text: str) -> bool | None:
    """Whichever of a yes and a no comes first ("no, no está bien" → no, "de acuerdo" → yes); None if
    neither."""
    words = fold(text).split()
    for i, word in enumerate(words):
        if word in NO:
            return False
        if word in YES or tuple(words[i : i + 2]) in _YES_PHRASES:
            return True
    return None


def parse_number(words: list[str], start: int) -> tuple[int, int] | None:
    """A cardinal number (0-100, digits or words: "veintidós", "treinta y cinco") at ``words[start]``:
    (value, words used)."""
    if start >= len(words):
        return None
    word = fold(words[start])
    if word.isdigit():
        return int(word), 1
    if word in _TENS:
        value = _TENS[word]
        if start + 2 < len(words) and words[start + 1] == "y":
            unit = _UNITS.get(fold(words[start + 2]))
            if unit is not None and 0 < unit < 10:
                return value + unit, 3
        return value, 1
    if word in _UNITS:
        return _UNITS[word], 1
    return None


def spoken_number(value: int) -> str:
    """How a number is read back: digits (a Spanish voice reads them in Spanish)."""
    return str(value)
