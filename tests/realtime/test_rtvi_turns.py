"""An agent turn's barge-in decisions reach the client in its RTVI metrics."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from callgate.pipeline import frames as f
from callgate.realtime.rtvi import from_event


def test_the_turn_metrics_say_why_the_agent_stopped_or_went_on() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    record = f.TurnRecord(
        role="agent", text="Thanks for", started_at=now, ended_at=now, interrupted=True,
        latency=f.TurnLatency(total_ms=500.0),
        barge_ins=(
            f.BargeIn("resumed", "backchannel", held_ms=640.0, words="Mm-hmm."),
            f.BargeIn("interrupted", "long_speech", held_ms=640.0),
        ),
    )  # fmt: skip
    (raw,) = from_event(f.TurnEnded(record))
    turn = json.loads(raw)["data"]["turn"]
    assert turn["interrupted"] is True
    assert turn["barge_ins"] == [
        {"outcome": "resumed", "reason": "backchannel", "held_ms": 640.0, "words": "Mm-hmm."},
        {"outcome": "interrupted", "reason": "long_speech", "held_ms": 640.0, "words": ""},
    ]
