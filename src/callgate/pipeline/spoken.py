"""Which agent text the caller actually heard.

The TTS stage registers each sentence and the output samples it synthesised; the player marks samples as
played. On barge-in, :meth:`SpokenTracker.spoken_text` gives the fully played sentences plus the part of
the current sentence in proportion to its played samples, cut back to whole words. It is an estimate
(speech rate is not uniform within a sentence) but never claims a word the caller did not hear the end of
in proportion, and is always a prefix of the full reply.

While a sentence is still being synthesised its length is unknown; it is estimated from the speech rate
of the reply's finished sentences (or :data:`DEFAULT_CHARS_PER_SECOND` before there is one).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_WORD = re.compile(r"\S+")

DEFAULT_CHARS_PER_SECOND = 14.0
"""A typical TTS speaking rate (about 160 words a minute)."""


def truncate_words(text: str, fraction: float) -> str:
    """The words of ``text`` that end within the first ``fraction`` of its characters."""
    if fraction >= 1.0:
        return text
    limit = fraction * len(text)
    end = 0
    for match in _WORD.finditer(text):
        if match.end() > limit:
            break
        end = match.end()
    return text[:end]


@dataclass(slots=True)
class _Segment:
    text: str
    audio: bool
    samples: int = 0
    """Output samples synthesised so far."""
    complete: bool = False
    played: int = 0
    delivered: bool = False
    """Text-only segment shown to the caller."""


class SpokenTracker:
    def __init__(self, *, sample_rate: int = 16000) -> None:
        self._segments: list[_Segment] = []
        self._default_samples_per_char = sample_rate / DEFAULT_CHARS_PER_SECOND

    def add(self, text: str, *, audio: bool) -> int:
        self._segments.append(_Segment(text=text, audio=audio))
        return len(self._segments) - 1

    def add_samples(self, index: int, samples: int) -> None:
        self._segments[index].samples += samples

    def complete(self, index: int) -> None:
        self._segments[index].complete = True

    def played(self, index: int, samples: int) -> None:
        self._segments[index].played += samples

    def delivered(self, index: int) -> None:
        self._segments[index].delivered = True

    def deliver_as_text(self, index: int) -> None:
        """A synthesised sentence shown as text instead (the caller switched to text mode)."""
        seg = self._segments[index]
        seg.audio, seg.delivered = False, True

    @property
    def full_text(self) -> str:
        """Everything the agent produced for this reply, heard or not."""
        return " ".join(s.text for s in self._segments)

    @property
    def anything_played(self) -> bool:
        return any(s.played or s.delivered for s in self._segments)

    def spoken_text(self) -> str:
        parts: list[str] = []
        for seg in self._segments:
            if not seg.audio:
                if not seg.delivered:
                    break
                parts.append(seg.text)
                continue
            if seg.complete and seg.played >= seg.samples:
                parts.append(seg.text)
                continue
            if seg.played:
                total = seg.samples if seg.complete else max(seg.samples, self._estimate(seg.text))
                partial = truncate_words(seg.text, seg.played / total)
                if partial:
                    parts.append(partial)
            break
        return " ".join(parts)

    def _estimate(self, text: str) -> float:
        """Samples ``text`` will probably take, from the speech rate of the finished sentences."""
        done = [s for s in self._segments if s.audio and s.complete and s.text]
        chars = sum(len(s.text) for s in done)
        per_char = sum(s.samples for s in done) / chars if chars else self._default_samples_per_char
        return per_char * len(text)
