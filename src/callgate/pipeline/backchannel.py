"""Backchannels: what a caller says while the agent talks without taking the turn ("uh-huh", "yeah").

Whisper writes them many ways ("Mm-hmm.", "mhm", "Uh huh!"), so both sides are reduced to lower-case
letters and spaces before comparing. An utterance is a backchannel when it is one of the phrases, or a
run of them ("yeah, yeah, okay").
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_NOT_LETTERS = re.compile(r"[^\w']+")

BACKCHANNELS: dict[str, tuple[str, ...]] = {
    "en": (
        "uh-huh", "uh huh", "mm-hmm", "mm hmm", "mhm", "mm", "hmm", "hm", "mmm", "yeah", "yea", "yes",
        "yep", "yup", "okay", "ok", "right", "alright", "all right", "sure", "i see", "got it", "cool",
        "great", "oh", "ah", "aha", "oh okay", "wow", "really", "exactly", "true", "fine", "good",
    ),
    "de": ("ja", "jaja", "mhm", "hm", "genau", "okay", "ok", "aha", "achso", "ach so", "stimmt", "gut"),
    "fr": ("oui", "ouais", "mhm", "hm", "d'accord", "ok", "okay", "ah", "voilà", "exactement", "bien"),
    "es": ("sí", "si", "ajá", "aha", "mhm", "vale", "claro", "ok", "okay", "bueno", "ya", "exacto"),
}  # fmt: skip
"""Defaults per language (the call's ``language``); an agent may give its own list."""


def _words(text: str) -> list[str]:
    return [w.strip("'") for w in _NOT_LETTERS.sub(" ", text.lower().replace("-", " ")).split() if w]


class Backchannels:
    """Recognises backchannel utterances of one call."""

    def __init__(self, phrases: Iterable[str]) -> None:
        self._phrases = sorted({" ".join(_words(p)) for p in phrases if _words(p)}, key=len, reverse=True)

    @classmethod
    def for_language(cls, language: str, phrases: Iterable[str] | None = None) -> Backchannels:
        if phrases is not None:
            return cls(phrases)
        return cls(BACKCHANNELS.get(language.split("-")[0].lower(), BACKCHANNELS["en"]))

    def matches(self, text: str) -> bool:
        """True if ``text`` is nothing but backchannel phrases (and not empty)."""
        rest = " ".join(_words(text))
        if not rest or not self._phrases:
            return False
        while rest:
            for phrase in self._phrases:
                if rest == phrase or rest.startswith(phrase + " "):
                    rest = rest[len(phrase) :].lstrip()
                    break
            else:
                return False
        return True
