"""Intent matching: keyword phrases found in the caller's words, tolerant of small slips."""

from __future__ import annotations

from collections.abc import Sequence

from callgate.flows.schema import Intent
from callgate.flows.slots import parse_yes_no
from callgate.flows.text import fuzzy_equal, normalize

__all__ = ["match_intent", "phrase_score"]


def phrase_score(words: Sequence[str], phrase: str) -> int:
    """Words in ``phrase`` if it occurs (contiguously, fuzzily) in ``words``, else 0."""
    wanted = normalize(phrase).split()
    for start in range(len(words) - len(wanted) + 1):
        if all(fuzzy_equal(words[start + k], w) for k, w in enumerate(wanted)):
            return len(wanted)
    return 0


def _score(intent: Intent, words: Sequence[str], text: str, language: str) -> int:
    if intent.answer is not None:
        answer = parse_yes_no(text, language=language)
        if answer is not None and answer.value == (intent.answer == "yes"):
            return 1
    return max((phrase_score(words, k) for k in intent.keywords), default=0)


def match_intent(intents: Sequence[Intent], text: str, *, language: str = "en") -> Intent | None:
    """The intent with the longest matching phrase in ``text`` (normalised); earlier wins ties.
    ``answer: yes|no`` intents hear the agent's ``language`` (English or Spanish)."""
    words = text.split()
    best: Intent | None = None
    best_score = 0
    for intent in intents:
        score = _score(intent, words, text, language)
        if score > best_score:
            best, best_score = intent, score
    return best
