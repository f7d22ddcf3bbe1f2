"""G.711 tables against the reference implementation (CPython's audioop, deprecated but still in 3.11)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from callgate.realtime.media import g711

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    audioop = pytest.importorskip("audioop", reason="the reference G.711 is gone from this Python")

EVERY_SAMPLE = np.arange(-32768, 32768, dtype="<i2").tobytes()
EVERY_CODE = bytes(range(256))


@pytest.mark.parametrize(
    ("law", "encode", "decode"),
    [("PCMU", "lin2ulaw", "ulaw2lin"), ("PCMA", "lin2alaw", "alaw2lin")],
)
def test_every_sample_and_code_matches_the_reference(law: g711.Law, encode: str, decode: str) -> None:
    assert g711.encode(EVERY_SAMPLE, law) == getattr(audioop, encode)(EVERY_SAMPLE, 2)
    assert g711.decode(EVERY_CODE, law) == getattr(audioop, decode)(EVERY_CODE, 2)


@pytest.mark.parametrize("law", ["PCMU", "PCMA"])
def test_silence_and_round_trip(law: g711.Law) -> None:
    assert g711.encode(bytes(320), law) == g711.SILENCE[law] * 160
    tone = (np.sin(np.arange(160) / 8000 * 2 * np.pi * 440) * 12000).astype("<i2")
    back = np.frombuffer(g711.decode(g711.encode(tone.tobytes(), law), law), dtype="<i2")
    assert np.max(np.abs(back.astype(int) - tone)) < 12000 / 16  # within a G.711 step at that level
