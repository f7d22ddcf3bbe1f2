"""An energy-based fake VAD: a frame is speech when it is louder than a threshold.

Tests push synthetic "speech" (a tone or noise) and "silence" (zeros); no model is needed and the result
is exact. A scripted probability list can override the energy rule for edge cases.
"""

from __future__ import annotations

from collections.abc import Iterable

from callgate.pipeline.audio import SAMPLE_WIDTH, dbfs
from callgate.pipeline.interfaces import VAD, VADCapabilities, VADStream


class FakeVADStream(VADStream):
    def __init__(self, caps: VADCapabilities, threshold_dbfs: float, script: list[float] | None) -> None:
        self._frame_bytes = caps.frame_samples * SAMPLE_WIDTH
        self._threshold = threshold_dbfs
        self._script = script
        self._buf = bytearray()
        self.frames = 0

    async def process(self, pcm16: bytes) -> float | None:
        self._buf.extend(pcm16)
        result: float | None = None
        while len(self._buf) >= self._frame_bytes:
            frame = bytes(self._buf[: self._frame_bytes])
            del self._buf[: self._frame_bytes]
            if self._script is not None:
                result = self._script[self.frames] if self.frames < len(self._script) else 0.0
            else:
                result = 1.0 if dbfs(frame) > self._threshold else 0.0
            self.frames += 1
        return result

    def reset(self) -> None:
        self._buf.clear()


class FakeVAD(VAD):
    def __init__(
        self,
        *,
        sample_rate: int = 16000,
        frame_samples: int = 320,
        threshold_dbfs: float = -45.0,
        script: Iterable[float] | None = None,
    ) -> None:
        self.capabilities = VADCapabilities(sample_rate=sample_rate, frame_samples=frame_samples)
        self._threshold = threshold_dbfs
        self._script = list(script) if script is not None else None
        self.streams: list[FakeVADStream] = []

    def create_stream(self) -> FakeVADStream:
        stream = FakeVADStream(self.capabilities, self._threshold, self._script)
        self.streams.append(stream)
        return stream
