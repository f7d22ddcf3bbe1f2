"""Call recording: a stereo 16-bit WAV, caller on the left, agent on the right, aligned in time.

Each channel is placed by the time its audio happened (seconds since the call started): caller audio as it
was received, agent audio when it was played. Small timing jitter (below ``max_jitter_ms``) is absorbed so a
continuous stream stays continuous; real gaps are filled with silence. Audio is written to the file as it
goes, keeping at most ``hold_ms`` in memory (how long the later channel may lag the earlier one);
:meth:`Recorder.close` writes the rest and finalises the header.
"""

from __future__ import annotations

import logging
import wave
from pathlib import Path
from types import TracebackType
from typing import Self

import numpy as np

from callgate.pipeline.audio import SAMPLE_WIDTH, StreamResampler, pcm16_to_array

logger = logging.getLogger(__name__)

CALLER, AGENT = 0, 1


class Recorder:
    def __init__(
        self,
        path: str | Path,
        *,
        sample_rate: int = 16000,
        max_jitter_ms: int = 60,
        hold_ms: int = 2000,
    ) -> None:
        self.path = Path(path)
        self.sample_rate = sample_rate
        self._jitter = sample_rate * max_jitter_ms // 1000
        self._hold = sample_rate * hold_ms // 1000
        self._flush_block = sample_rate // 2
        self._wav = wave.open(str(self.path), "wb")  # noqa: SIM115 - closed in close()
        self._wav.setnchannels(2)
        self._wav.setsampwidth(SAMPLE_WIDTH)
        self._wav.setframerate(sample_rate)
        self._base = 0
        """Index of the first sample not yet written to the file."""
        self._tracks = [bytearray(), bytearray()]
        """Per channel, samples from ``_base`` on."""
        self._cursor = [0, 0]
        """Per channel, the index just after its last sample."""
        self._resamplers: dict[int, StreamResampler] = {}
        self.dropped_samples = 0
        """Samples that arrived later than ``hold_ms`` behind the other channel and were discarded."""
        self.closed = False

    @property
    def frames_written(self) -> int:
        return self._base

    def write_caller(self, pcm16: bytes, at: float) -> None:
        """Caller audio (at the recorder's rate) that started ``at`` seconds after the call started."""
        self._write(CALLER, pcm16, at)

    def write_agent(self, pcm16: bytes, at: float, *, sample_rate: int | None = None) -> None:
        """Agent audio played from ``at`` seconds after the call started; resampled if needed."""
        rate = sample_rate or self.sample_rate
        if rate != self.sample_rate:
            resampler = self._resamplers.get(rate)
            if resampler is None:
                resampler = self._resamplers[rate] = StreamResampler(rate, self.sample_rate)
            pcm16 = resampler.process(pcm16)
        self._write(AGENT, pcm16, at)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._flush(max(self._cursor))
        self._wav.close()
        if self.dropped_samples:
            logger.warning("recording %s: %d late samples dropped", self.path, self.dropped_samples)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _write(self, channel: int, pcm16: bytes, at: float) -> None:
        if self.closed or not pcm16:
            return
        pos = round(at * self.sample_rate)
        cursor = self._cursor[channel]
        if pos - cursor <= self._jitter:
            pos = cursor  # continuous, early, or jitter: keep the stream gapless and never overlap
        if pos < self._base:
            skip = self._base - pos
            self.dropped_samples += min(skip, len(pcm16) // SAMPLE_WIDTH)
            pcm16 = pcm16[skip * SAMPLE_WIDTH :]
            pos = self._base
            if not pcm16:
                return
        track = self._tracks[channel]
        offset = (pos - self._base) * SAMPLE_WIDTH
        if len(track) < offset:
            track.extend(bytes(offset - len(track)))
        track.extend(pcm16)
        self._cursor[channel] = pos + len(pcm16) // SAMPLE_WIDTH
        horizon = max(self._cursor) - self._hold
        if horizon - self._base >= self._flush_block:
            self._flush(horizon)

    def _flush(self, upto: int) -> None:
        n = upto - self._base
        if n <= 0:
            return
        stereo = np.zeros((n, 2), dtype="<i2")
        for channel, track in enumerate(self._tracks):
            take = min(len(track), n * SAMPLE_WIDTH)
            samples = pcm16_to_array(bytes(track[:take]))
            stereo[: samples.size, channel] = samples
            del track[:take]
        self._wav.writeframes(stereo.tobytes())
        self._base = upto
