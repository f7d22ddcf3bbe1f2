"""The agent's voice as an aiortc track: PCM16 in, one encoded 20 ms packet out every 20 ms.

:meth:`OutboundAudioTrack.recv` is called by aiortc's RTP sender in a loop. It returns the oldest queued
frame, encoded (:class:`~callgate.realtime.media.encoder.FrameEncoder`), in the track's next 20 ms slot
on its own clock, or silence when there is none, so the peer always receives a continuous stream. While
idle that silence is one pre-encoded packet (Opus, G.711): an idle call costs no encoding, no level
measurement and no thread-pool hop, only the packet's protection and sending.

Agent audio is paced once, by the session's player, which hands over one frame just in time per 20 ms
(``pipeline/playout.py``). So the track adds no prebuffer: a frame goes out in the first slot that comes
after it was queued (0-20 ms later). Since the player's frames arrive at the track's slot times give or
take scheduling jitter, a slot that finds the queue empty in the middle of a stretch of speech waits up
to ``grace_ms`` for the frame rather than inserting silence. :meth:`flush` drops everything queued at
once (barge-in): the next slot, or the one being waited for, is silence.
"""

from __future__ import annotations

import asyncio
import fractions
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av.packet import Packet

from callgate.pipeline.audio import FRAME_MS, Framer
from callgate.realtime.media.encoder import FrameEncoder

MAX_LAG_S = 0.1
"""If the sender loop falls this far behind its slots (a stalled event loop), re-anchor the clock
instead of sending a burst of catch-up frames."""


@dataclass(slots=True)
class OutboundStats:
    frames: int = 0
    """Frames of agent audio sent."""
    silent_frames: int = 0
    """Slots filled with silence (idle or underrun)."""
    encoded_silence: int = 0
    """Silent slots that had to be encoded (the end of a stretch of speech; every one for G.722)."""
    underruns: int = 0
    """Times the queue stayed empty past the grace time in the middle of a stretch of speech (the end
    of each stretch counts too)."""
    flushed_frames: int = 0
    late_slots: int = 0


class OutboundAudioTrack(MediaStreamTrack):
    """A paced mono PCM16 track at ``sample_rate``, sent as ``codec``; see the module docstring."""

    kind = "audio"

    def __init__(
        self,
        *,
        sample_rate: int,
        codec: str = "opus",
        grace_ms: int = 20,
        max_queue_ms: int = 2000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.sample_rate = sample_rate
        self.stats = OutboundStats()
        self._encoder = FrameEncoder(codec, sample_rate)
        self._samples = self._encoder.samples
        self._silence = bytes(self._samples * 2)
        self._time_base = fractions.Fraction(1, sample_rate)
        self._framer = Framer(sample_rate)
        self._queue: deque[bytes] = deque()
        self._grace_s = grace_ms / 1000
        self._max_frames = max(1, max_queue_ms // FRAME_MS)
        self._room = asyncio.Event()
        self._room.set()
        self._arrived = asyncio.Event()
        self._clock = clock
        self._start: float | None = None
        self._slot = 0
        self._playing = False
        self._flushed = False  # since the last slot: the next one is silence, with no waiting
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
            self._queue.append(frame)
            self._arrived.set()

    def flush(self) -> int:
        """Drop all queued audio now; return the number of 20 ms frames dropped."""
        dropped = len(self._queue) + (1 if self._framer.pending_bytes else 0)
        self._queue.clear()
        self._framer.clear()
        self._flushed = True
        self._flushes += 1
        self.stats.flushed_frames += dropped
        self._room.set()
        self._arrived.set()  # a slot waiting for a frame sends silence now
        return dropped

    def stop(self) -> None:
        self._queue.clear()
        self._room.set()  # release a producer waiting for room
        self._arrived.set()
        super().stop()

    async def recv(self) -> Packet[Any]:  # aiortc sends a Packet as is
        if self.readyState != "live":
            raise MediaStreamError
        await self._next_slot()
        if not self._queue and self._playing and not self._flushed:
            await self._wait_for_frame()
            if self.readyState != "live":
                raise MediaStreamError
        packet = Packet(self._pick())
        packet.pts = self._slot * self._samples
        packet.time_base = self._time_base
        self._slot += 1
        return packet

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

    async def _wait_for_frame(self) -> None:
        """Mid-speech and the slot's frame is not there yet: wait a little for the player's frame."""
        self._arrived.clear()
        try:
            async with asyncio.timeout(self._grace_s):
                await self._arrived.wait()
        except TimeoutError:
            pass

    def _pick(self) -> bytes:
        """The payload for this slot: the next frame encoded, or silence."""
        queue, flushed = self._queue, self._flushed
        self._flushed = False
        if queue:
            frame = queue.popleft()
            self._playing = True
            self.stats.frames += 1
            if len(queue) < self._max_frames:
                self._room.set()
            return self._encoder.encode(frame)
        self.stats.silent_frames += 1
        if self._playing or self._encoder.silence is None:
            # The first silent slot after speech goes through the encoder: it plays out the audio the
            # codec still holds (Opus looks 6.5 ms ahead) and settles it on silence.
            if self._playing:
                self._playing = False
                self.stats.underruns += 0 if flushed else 1
            self.stats.encoded_silence += 1
            return self._encoder.encode(self._silence)
        return self._encoder.silence
