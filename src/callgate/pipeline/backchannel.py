"""Backchannels: what a caller says while the agent talks without taking the turn ("uh-huh", "yeah").

Whisper writes them many ways ("Mm-hmm.", "mhm", "Uh huh!"), so both sides are reduced to lower-case
letters and spaces before comparing. An utterance is a backchannel when it is one of the phrases, or a
run of them ("yeah, yeah, okay"), and not one of the few runs that mean something else ("uh-uh" is a
no). A hesitation alone ("uh", "um") is one too: it asks nothing of the agent.

One or two words over the agent that are no backchannel are heard again with :attr:`Backchannels.prompt`
("Uh-huh. Mm-hmm. Yeah. Okay. Right." in English) as the STT's prompt, where the STT takes one
(:class:`~callgate.pipeline.utterance.Recheck`, set when the sound holds the agent; at a pause as well
as at the end, so the agent goes on at once). Whisper tiny.en alone writes a short "uh-huh" as "Uh-uh.",
"Ah", "Up." or "Out." and a hum as "and then them", each of which cut the agent off; with the prompt,
mostly as what they are. Not the first time round: with the prompt, Whisper finds "Okay." in silence.
``bench/backchannels.py`` measures both rules on 144 backchannels and 540 other short utterances
(piper and espeak-ng voices, clean, through Opus, through G.711; BENCHMARKS.md "Backchannels heard"):
real interruptions are never taken for backchannels; a few one-word ones are ("Stop." heard as
"Uh-huh."), and a caller who says it again, longer, cuts the agent off whatever the words (700 ms).
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
        "uh", "um", "uhm", "er", "erm", "m",
    ),
    "de": ("ja", "jaja", "mhm", "hm", "genau", "okay", "ok", "aha", "achso", "ach so", "stimmt", "gut"),
    "fr": ("oui", "ouais", "mhm", "hm", "d'accord", "ok", "okay", "ah", "voilà", "exactement", "bien"),
    "es": ("sí", "si", "ajá", "aha", "mhm", "vale", "claro", "ok", "okay", "bueno", "ya", "exacto"),
}  # fmt: skip
"""Defaults per language (the call's ``language``); an agent may give its own list."""

_NOT_BACKCHANNELS: dict[str, frozenset[str]] = {"en": frozenset({"uh uh", "uh oh"})}
"""Runs of backchannel words that say something else: "uh-uh" is a no, "uh-oh" a problem."""

PROMPTS: dict[str, str] = {
    "en": "Uh-huh. Mm-hmm. Yeah. Okay. Right.",
    "de": "Mhm. Ja. Genau. Okay.",
    "fr": "Mhm. Oui. Ouais. D'accord.",
    "es": "Mhm. Sí. Vale. Claro.",
}
"""The STT prompt for what a caller says over the agent, per language (with the default list)."""


def _words(text: str) -> list[str]:
    return [w.strip("'") for w in _NOT_LETTERS.sub(" ", text.lower().replace("-", " ")).split() if w]


class Backchannels:
    """Recognises backchannel utterances of one call."""

    def __init__(
        self, phrases: Iterable[str], *, prompt: str | None = None, never: Iterable[str] = ()
    ) -> None:
        phrases = [p for p in phrases if _words(p)]
        self._phrases = sorted({" ".join(_words(p)) for p in phrases}, key=len, reverse=True)
        self._never = frozenset(" ".join(_words(p)) for p in never)
        self.prompt = prompt if prompt is not None else _prompt_of(phrases)
        """What the caller says over the agent is transcribed with this as the STT's prompt ("" none)."""

    @classmethod
    def for_language(cls, language: str, phrases: Iterable[str] | None = None) -> Backchannels:
        if phrases is not None:
            return cls(phrases)
        code = language.split("-")[0].lower()
        if code not in BACKCHANNELS:  # English words, but no English prompt for another language's STT
            return cls(BACKCHANNELS["en"], prompt="", never=_NOT_BACKCHANNELS["en"])
        return cls(BACKCHANNELS[code], prompt=PROMPTS[code], never=_NOT_BACKCHANNELS.get(code, ()))

    def matches(self, text: str) -> bool:
        """True if ``text`` is nothing but backchannel phrases (and not empty)."""
        rest = " ".join(_words(text))
        if not rest or not self._phrases or rest in self._never:
            return False
        while rest:
            for phrase in self._phrases:
                if rest == phrase or rest.startswith(phrase + " "):
                    rest = rest[len(phrase) :].lstrip()
                    break
            else:
                return False
        return True


def _prompt_of(phrases: list[str], most: int = 5) -> str:
    """A prompt from an agent's own list: its first few phrases, written as sentences."""
    seen: dict[str, str] = {}
    for phrase in phrases:
        seen.setdefault(" ".join(_words(phrase)), phrase.strip().rstrip(".!?"))
        if len(seen) == most:
            break
    return " ".join(p[:1].upper() + p[1:] + "." for p in seen.values())
