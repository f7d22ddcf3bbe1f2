"""Streaming sentence splitter: agent text in, whole sentences out, so TTS can start early.

A sentence ends at ``.``, ``!``, ``?`` or ``…`` (plus closing quotes or brackets) followed by whitespace,
or at a line break. A period is not an end after a known abbreviation ("Dr.", "e.g."), after a single
initial ("J."), or inside a number ("3.30", "v2.1" — no whitespace follows the period there). Text that
runs on without an end is cut at a comma or space once it exceeds ``max_chars``, to bound TTS latency.

The caller waits for the *first* piece only: with ``first_clause_chars`` set, a reply's first sentence is
cut at its first clause boundary (``, `` ``; `` ``: `` `` - ``) that comes after at least that many
characters, so that its audio starts after a short phrase instead of a whole long sentence.
"""

from __future__ import annotations

import re

ABBREVIATIONS = frozenset(
    {
        "mr", "mrs", "ms", "mx", "dr", "prof", "sr", "jr", "st", "mt", "ft", "rev", "hon", "gen", "col",
        "capt", "lt", "sgt", "gov", "sen", "rep", "pres", "vs", "etc", "approx", "appt", "apt", "dept",
        "est", "inc", "ltd", "co", "corp", "no", "nos", "vol", "fig", "ave", "blvd", "rd", "jan", "feb",
        "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec", "mon", "tue", "wed", "thu",
        "fri", "sat", "sun", "e.g", "i.e", "a.m", "p.m", "u.s", "u.k", "ph.d", "cf", "al",
    }
)  # fmt: skip

# Terminal punctuation, optional closing quotes/brackets, then whitespace (group 3).
_END = re.compile(r"([.!?\u2026]+)([\"')\]\u201d\u2019]*)(\s+)")
_WORD_BEFORE = re.compile(r"([\w.]+)$")
_CLAUSE = re.compile(r"[,;:]\s|\s[-\u2013\u2014]\s")


def _is_boundary(text: str, match: re.Match[str]) -> bool:
    punct = match.group(1)
    if "\n" in match.group(3):
        return True
    if punct != ".":
        return True  # "!", "?", "...", "…", "?!" always end a sentence
    before = _WORD_BEFORE.search(text, 0, match.start(1))
    if before is None:
        return True
    word = before.group(1).lower().strip(".")
    if word in ABBREVIATIONS:
        return False
    # A single letter ("J. R. Smith") is an initial, unless it is a lone digit ("Press 1. Then…").
    return not (len(word) == 1 and word.isalpha())


class SentenceSplitter:
    """Feed text as it streams; get back complete sentences, stripped, in order."""

    def __init__(self, *, max_chars: int = 250, first_clause_chars: int = 0) -> None:
        self.max_chars = max_chars
        self.first_clause_chars = first_clause_chars
        self._buf = ""
        self._first = True

    def push(self, text: str) -> list[str]:
        self._buf += text
        out = self._sentences()
        if self._first and self.first_clause_chars:
            if out:  # the first sentence is complete: cut it if it has a clause boundary
                head, tail = self._first_clause(out[0])
                out[:1] = [head, tail] if tail else [head]
            else:  # still streaming: a boundary already followed by a word is enough
                head, tail = self._first_clause(self._buf)
                if tail:
                    self._buf = tail
                    out = [head, *self._sentences()]
        if out:
            self._first = False
        return out

    def _first_clause(self, text: str) -> tuple[str, str]:
        """``text`` cut after its first clause boundary past ``first_clause_chars`` (else ``text, ""``)."""
        clause = _CLAUSE.search(text, self.first_clause_chars)
        if clause is None or not text[clause.end() :].strip():
            return text, ""
        return text[: clause.end()].strip(), text[clause.end() :].lstrip()

    def _sentences(self) -> list[str]:
        out: list[str] = []
        start = 0
        for match in _END.finditer(self._buf):
            if match.start() < start:
                continue
            if _is_boundary(self._buf, match):
                sentence = self._buf[start : match.end(2)].strip()
                if sentence:
                    out.append(sentence)
                start = match.end()
        if start:
            self._buf = self._buf[start:]
        if "\n" in self._buf:
            *lines, self._buf = self._buf.split("\n")
            out.extend(line.strip() for line in lines if line.strip())
        while len(self._buf) > self.max_chars:
            head, self._buf = self._cut(self._buf)
            if head:
                out.append(head)
        return out

    def flush(self) -> str | None:
        """The unfinished last sentence, if any; the splitter is empty and ready for a new reply."""
        rest, self._buf, self._first = self._buf.strip(), "", True
        return rest or None

    def _cut(self, text: str) -> tuple[str, str]:
        window = text[: self.max_chars]
        cut = window.rfind(", ")
        if cut < self.max_chars // 3:
            cut = window.rfind(" ")
        if cut <= 0:
            cut = self.max_chars - 1
        return text[: cut + 1].strip(), text[cut + 1 :].lstrip()


def split_sentences(text: str, *, max_chars: int = 250) -> list[str]:
    """Split a whole text at once."""
    splitter = SentenceSplitter(max_chars=max_chars)
    out = splitter.push(text)
    rest = splitter.flush()
    if rest:
        out.append(rest)
    return out


def first_sentence(text: str, *, max_chars: int = 250, first_clause_chars: int = 0) -> str:
    """The first piece of ``text`` a :class:`SentenceSplitter` so configured gives (what a reply sends to
    speech synthesis first)."""
    splitter = SentenceSplitter(max_chars=max_chars, first_clause_chars=first_clause_chars)
    out = splitter.push(text)
    return out[0] if out else (splitter.flush() or "")
