"""Geometry of the dashboard's inline SVG charts (no script needed to draw them; each mark has a
text alternative)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from callgate.domain.reports import Day
    from callgate.store.models import TranscriptTurn

STAGES = (
    ("endpointing_ms", "Endpointing", "s-end"),
    ("stt_ms", "STT", "s-stt"),
    ("agent_first_token_ms", "Agent", "s-agent"),
    ("tts_first_audio_ms", "TTS", "s-tts"),
)
WIDTH, HEIGHT, PAD = 640, 200, 30


@dataclass(frozen=True, slots=True)
class Rect:
    x: float
    y: float
    w: float
    h: float
    css: str
    title: str


@dataclass(frozen=True, slots=True)
class Chart:
    rects: list[Rect]
    labels: list[tuple[float, str]]
    max_value: int
    lines: list[tuple[str, str, str]]  # (css class, SVG points, title)


def _scale(value: float, top: float) -> float:
    return (HEIGHT - PAD) * value / top if top else 0.0


def latency_chart(turns: list[TranscriptTurn]) -> Chart | None:
    """One stacked bar per agent turn: endpointing, STT, agent first token, TTS first audio."""
    measured = [t for t in turns if t.role == "agent" and any(getattr(t, s[0]) for s in STAGES)]
    if not measured:
        return None
    totals = [sum(getattr(t, s[0]) or 0 for s in STAGES) for t in measured]
    top = max(max(totals), 1)
    slot = (WIDTH - PAD) / len(measured)
    bar = min(40.0, slot * 0.7)
    rects, labels = [], []
    for i, turn in enumerate(measured):
        x = PAD + i * slot + (slot - bar) / 2
        y = float(HEIGHT - PAD)
        for field, name, css in STAGES:
            value = getattr(turn, field) or 0
            h = _scale(value, top)
            y -= h
            rects.append(Rect(x, y, bar, h, css, f"turn {turn.seq}: {name} {value} ms"))
        labels.append((x + bar / 2, f"#{turn.seq}"))
    return Chart(rects=rects, labels=labels, max_value=top, lines=[])


def calls_per_day(days: list[Day]) -> Chart:
    top = max([d.calls for d in days] + [1])
    slot = (WIDTH - PAD) / len(days)
    rects, labels = [], []
    for i, d in enumerate(days):
        h = _scale(d.calls, top)
        x = PAD + i * slot + slot * 0.15
        rects.append(Rect(x, HEIGHT - PAD - h, slot * 0.7, h, "s-calls", f"{d.day}: {d.calls} calls"))
        labels.append((x + slot * 0.35, d.day.strftime("%d")))
    return Chart(rects=rects, labels=labels, max_value=top, lines=[])


def latency_over_time(days: list[Day]) -> Chart:
    """A p50 and a p95 line across the days, with a marker per day that has calls (its title gives
    the day's figures)."""
    top = max([d.p95_ms or 0 for d in days] + [1])
    slot = (WIDTH - PAD) / len(days)
    labels = [(PAD + i * slot + slot / 2, d.day.strftime("%d")) for i, d in enumerate(days)]
    lines, marks = [], []
    for name, css in (("p50_ms", "l-p50"), ("p95_ms", "l-p95")):
        points = []
        for i, d in enumerate(days):
            if (v := getattr(d, name)) is None:
                continue
            x, y = PAD + i * slot + slot / 2, HEIGHT - PAD - _scale(v, top)
            points.append(f"{x:.1f},{y:.1f}")
            label = name.removesuffix("_ms")
            marks.append(Rect(x - 3, y - 3, 6, 6, f"m-{css}", f"{d.day}: {label} {v} ms"))
        lines.append((css, " ".join(points), name.removesuffix("_ms")))
    return Chart(rects=marks, labels=labels, max_value=top, lines=lines)
