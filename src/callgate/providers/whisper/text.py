"""Whisper's tell-tale texts: a loop the short window made up, said instead of what was spoken."""

from __future__ import annotations

import re
import zlib

__all__ = ["first_of_loop", "looping", "started_over", "words"]

_COMPRESSION_RATIO_CEILING = 2.4


def looping(text: str) -> bool:
    """Whisper's signs of a loop: a text that compresses too well, a phrase said twice in a row
    ("Yes. Yes. Yes.", "at three at three"), or a sentence that starts over ("What are your hours?
    What are your"). A word said twice ("wait, wait") is not one."""
    data = text.encode()
    if data and len(data) / len(zlib.compress(data)) > _COMPRESSION_RATIO_CEILING:
        return True
    said = words(text)
    for size in range(1, len(said) // 2 + 1):
        for i in range(len(said) - 2 * size + 1):
            phrase = said[i : i + size]
            twice = phrase == said[i + size : i + 2 * size]
            if twice and (size > 1 or phrase == said[i + 2 * size : i + 3 * size]):
                return True
    sentences = [words(part) for part in re.split(r"[.?!]+", text)]
    sentences = [sentence for sentence in sentences if sentence]
    return any(
        later == earlier[: len(later)] for i, earlier in enumerate(sentences) for later in sentences[i + 1 :]
    )


def first_of_loop(text: str) -> str | None:
    """The phrase that ``text`` only repeats ("Yes? Yes? Yes" -> "Yes?"), or None if it is not one
    phrase said over and over (at least twice, the last time possibly cut short)."""
    tokens = text.split()
    said = words(text)
    if len(tokens) != len(said):
        return None  # a token of punctuation only: keep it simple, not a loop of this kind
    for size in range(1, len(said) // 2 + 1):
        phrase = said[:size]
        if all(said[i] == phrase[i % size] for i in range(len(said))):
            return " ".join(tokens[:size])
    return None


_FIRST_SENTENCE = re.compile(r"\s*(.+?[.?!]+)(?:\s+|$)(.*)", re.DOTALL)


def started_over(text: str) -> str | None:
    """The first sentence of ``text`` if all that follows it only starts that sentence again
    ("Where can I park? Where can I" -> "Where can I park?"), else None.

    A short window often makes Whisper transcribe the utterance and then begin it a second time, as
    if the window's silence were more of the same speech; Whisper's 30 s window gives that first
    sentence alone (checked on the utterances of ``bench/turns.py`` and ``bench/sessions.py --speech``).
    """
    match = _FIRST_SENTENCE.fullmatch(text.strip())
    if match is None or not match.group(2).strip():
        return None
    first = words(match.group(1))
    rest = [words(part) for part in re.split(r"[.?!]+", match.group(2))]
    rest = [part for part in rest if part]
    if not first or not rest or not all(part == first[: len(part)] for part in rest):
        return None
    return match.group(1)


def words(text: str) -> list[str]:
    """The words of ``text``, lower case, without punctuation."""
    cleaned = ("".join(c for c in w.lower() if c.isalnum()) for w in text.split())
    return [w for w in cleaned if w]
