"""The agent's voice as an aiortc track: PCM16 in, one 20 ms frame out every 20 ms.

:meth:`OutboundAudioTrack.recv` is called by aiortc's RTP sender in a loop; it waits for the next 20 ms
slot on its own clock and returns the oldest queued frame, or silence when there is none, so the peer
always receives a continuous stream. A small prebuffer (``prebuffer_ms``) absorbs the jitter between the
producer's pacing and this clock: a stretch of speech starts playing once that much is queued (or the
first frame has waited that long), and re-buffers after running dry. :meth:`flush` drops everything
queued at once (barge-in): the next slot is silence.
"""

from __future__ import annotations

import asyncio
import fractions
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import AudioFrame

from callgate.pipeline.audio import FRAME_MS, Framer, samples_per_frame

MAX_LAG_S = 0.1
"""If the sender loop falls this far behind its slots (a stalled event loop), re-anchor the clock
instead of sending a burst of catch-up frames."""


@dataclass(slots=True)
class OutboundStats:
    frames: int = 0
    """Frames of agent audio sent."""
    silent_frames: int = 0
    """Slots filled with silence (idle, prebuffering or underrun)."""
    underruns: int = 0
    """Times the queue ran dry in the middle of a stretch of speech."""
    flushed_frames: int = 0
    late_slots: int = 0


class OutboundAudioTrack(MediaStreamTrack):
    """A paced mono PCM16 track at ``sample_rate``; see the module docstring."""

    kind = "audio"

    def __init__(
        self,
        *,
        sample_rate: int,
        prebuffer_ms: int = 40,
        max_queue_ms: int = 2000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.sample_rate = sample_rate
        self.stats = OutboundStats()
        self._samples = samples_per_frame(sample_rate)
        self._silence = bytes(self._samples * 2)
        self._framer = Framer(sample_rate)
        self._queue: deque[tuple[float, bytes]] = deque()  # (queued at, frame)
        self._prebuffer = max(0, prebuffer_ms // FRAME_MS)
        self._prebuffer_s = prebuffer_ms / 1000
        self._max_frames = max(1, max_queue_ms // FRAME_MS)
        self._room = asyncio.Event()
        self._room.set()
        self._clock = clock
        self._start: float | None = None
        self._slot = 0
        self._playing = False
        self._flushes = 0

    @property
    def queued_ms(self) -> int:
        return len(self._queue) * FRAME_MS

    @property
    def playing(self) -> bool:
        """True while a stretch of speech is being sent (not silence)."""
        return self._playing

    async def put(self, pcm16: bytes) -> None:
        """Queue audio (any length, at ``sample_rate``). Waits while over ``max_queue_ms`` is queued,
        so a producer faster than real time is paced by the track. A :meth:`flush` while it waits drops
        the rest of ``pcm16`` too."""
        generation = self._flushes
        for frame in self._framer.push(pcm16):
            while len(self._queue) >= self._max_frames:
                self._room.clear()
                await self._room.wait()
                if self._flushes != generation or self.readyState != "live":
                    return
            self._queue.append((self._clock(), frame))

    def flush(self) -> int:
        """Drop all queued audio now; return the number of 20 ms frames dropped."""
        dropped = len(self._queue) + (1 if self._framer.pending_bytes else 0)
        self._queue.clear()
        self._framer.clear()
        self._playing = False
        self._flushes += 1
        self.stats.flushed_frames += dropped
        self._room.set()
        return dropped

    def stop(self) -> None:
        self._queue.clear()
        self._room.set()  # release a producer waiting for room
        super().stop()

    async def recv(self) -> AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        await self._next_slot()
        frame = AudioFrame(format="s16", layout="mono", samples=self._samples)
        frame.planes[0].update(self._pick())
        frame.pts = self._slot * self._samples
        frame.sample_rate = self.sample_rate
        frame.time_base = fractions.Fraction(1, self.sample_rate)
        self._slot += 1
        return frame

    async def _next_slot(self) -> None:
        now = self._clock()
        if self._start is None:
            self._start = now - self._slot * FRAME_MS / 1000
            return
        due = self._start + self._slot * FRAME_MS / 1000
        if due > now:
            await asyncio.sleep(due - now)
        elif now - due > MAX_LAG_S:
            self.stats.late_slots += 1
            self._start = now - self._slot * FRAME_MS / 1000

    def _pick(self) -> bytes:
        queue = self._queue
        if not self._playing and queue:
            waited = self._clock() - queue[0][0]
            self._playing = len(queue) >= self._prebuffer or waited >= self._prebuffer_s
        if self._playing and queue:
            _, frame = queue.popleft()
            self.stats.frames += 1
            if len(queue) < self._max_frames:
                self._room.set()
            return frame
        if self._playing:  # ran dry mid-speech (or the speech ended): re-buffer before playing on
            self._playing = False
            self.stats.underruns += 1
        self.stats.silent_frames += 1
        return self._silence
