"""The agent's voice as an aiortc track: PCM16 in, one encoded 20 ms packet out per 20 ms of speech.

:meth:`OutboundAudioTrack.recv` is called by aiortc's RTP sender in a loop. While the agent speaks it
returns the oldest queued frame, encoded (:class:`~callgate.realtime.media.encoder.FrameEncoder`), one
per 20 ms slot on the track's own clock.

**Silence.** For Opus the track sends nothing while the agent is silent (discontinuous transmission,
DTX, as a browser's own Opus sender does): after a stretch of speech it sends ``DTX_HANGOVER`` silent
frames (the first one encoded: it plays out the audio the codec still holds, Opus looks 6.5 ms ahead;
together they also push the end of the speech out of receivers that hold back the last few packets, as
aiortc's 4-packet prefetch does), then the DTX packet (the encoder's TOC byte alone), which a WebRTC
receiver plays as comfort noise rather than as loss; then ``recv`` waits until audio is queued,
sending the DTX packet again every ``DTX_REFRESH_MS`` (400 ms, as browsers do). A call starts the same
way, so the peer's track unmutes. An idle call therefore costs 2.5 packets a second instead of 50.
The next talkspurt goes out at once, its RTP timestamp moved forward by exactly the time that passed
(the receiver's playout clock ran on meanwhile) and its first packet carrying the RTP marker bit
(:func:`~callgate.realtime.media.rtp_hooks.mark_talkspurts`). Other codecs have no DTX here: their
silence is a continuous stream of one pre-encoded packet (G.711), or encoded silence (G.722).

Agent audio is paced once, by the session's player, which hands over one frame just in time per 20 ms
(``pipeline/playout.py``). So the track adds no prebuffer: a frame goes out in the first slot that comes
after it was queued (0-20 ms later; at once when it starts a talkspurt). Since the player's frames
arrive at the track's slot times give or take scheduling jitter, a slot that finds the queue empty in the
middle of a stretch of speech waits up to ``grace_ms`` for the frame rather than inserting silence.
:meth:`flush` drops everything queued at once (barge-in): the next slot, or the one being waited for, is
silence.
"""

from __future__ import annotations

import asyncio
import fractions
import math
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
DTX_HANGOVER = 5
"""Silent frames sent after speech (and at the start) before the DTX packet; libopus's own DTX waits
10 (200 ms)."""
DTX_REFRESH_MS = 400
"""While silent, one DTX packet every 400 ms, as libopus and browsers send one (a comfort-noise update).
Chromium's NetEq plays DTX as comfort noise only for a while (about a second) after the last packet;
then it falls back to concealment, as if packets were lost. 2.5 packets a second instead of 50."""
_FRAME_S = FRAME_MS / 1000


@dataclass(slots=True)
class OutboundStats:
    frames: int = 0
    """Frames of agent audio sent."""
    silent_frames: int = 0
    """Silent packets sent (idle or underrun; with DTX only the first ``DTX_HANGOVER`` of each silence)."""
    encoded_silence: int = 0
    """Silent slots that had to be encoded (the end of a stretch of speech; every one for G.722)."""
    dtx_packets: int = 0
    """DTX packets sent (Opus): the first of each silence, then one per ``DTX_REFRESH_MS``."""
    talkspurts: int = 0
    """Stretches of speech sent."""
    underruns: int = 0
    """Times the queue stayed empty past the grace time in the middle of a stretch of speech (the end
    of each stretch counts too)."""
    flushed_frames: int = 0
    late_slots: int = 0


class OutboundAudioTrack(MediaStreamTrack):
    """A paced mono PCM16 track at ``sample_rate``, sent as ``codec``; see the module docstring.
    ``dtx=False`` sends silence as a continuous stream even for Opus; ``dtx_refresh_ms`` is the interval
    of DTX packets while silent (0: one only)."""

    kind = "audio"

    def __init__(
        self,
        *,
        sample_rate: int,
        codec: str = "opus",
        grace_ms: int = 20,
        max_queue_ms: int = 2000,
        dtx: bool = True,
        dtx_refresh_ms: int = DTX_REFRESH_MS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.sample_rate = sample_rate
        self.stats = OutboundStats()
        self._encoder = FrameEncoder(codec, sample_rate)
        self._samples = self._encoder.samples
        self._silence = bytes(self._samples * 2)
        self._dtx = self._encoder.dtx if dtx else None
        self._refresh_s = dtx_refresh_ms / 1000 if dtx_refresh_ms > 0 else math.inf
        self._time_base = fractions.Fraction(1, sample_rate)
        self._framer = Framer(sample_rate)
        self._queue: deque[bytes] = deque()
        self._grace_s = grace_ms / 1000
        self._max_frames = max(1, max_queue_ms // FRAME_MS)
        self._room = asyncio.Event()
        self._room.set()
        self._arrived = asyncio.Event()
        self._clock = clock
        self._due: float | None = None  # when the next packet is due (monotonic seconds)
        self._pts = 0  # its timestamp, in samples
        self._playing = False
        self._silent_run = 0  # silent packets sent since the last speech (or the start)
        self._quiet = False  # DTX: only DTX packets are sent until audio is queued
        self._flushed = False  # since the last slot: the next one is silence, with no waiting
        self._flushes = 0

    @property
    def queued_ms(self) -> int:
        return len(self._queue) * FRAME_MS

    @property
    def playing(self) -> bool:
        """True while a stretch of speech is being sent (not silence)."""
        return self._playing

    @property
    def quiet(self) -> bool:
        """True while the agent is silent and only DTX packets are sent (between talkspurts)."""
        return self._quiet

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
        if self._quiet:
            await self._wait_while_quiet()
        else:
            await self._next_slot()
            if not self._queue and self._playing and not self._flushed:
                await self._wait_for_frame()
        if self.readyState != "live":
            raise MediaStreamError
        packet = Packet(self._pick())
        packet.pts = self._pts
        packet.time_base = self._time_base
        self._pts += self._samples
        assert self._due is not None
        self._due += _FRAME_S
        return packet

    async def _next_slot(self) -> None:
        now = self._clock()
        if self._due is None:
            self._due = now
            return
        if self._due > now:
            await asyncio.sleep(self._due - now)
        elif now - self._due > MAX_LAG_S:
            self.stats.late_slots += 1
            self._due = now

    async def _wait_while_quiet(self) -> None:
        """DTX: wait until audio is queued (it goes out at once) or the next DTX packet is due, with
        the timestamp moved on by the time that passed since the slot that was next."""
        assert self._due is not None
        refresh_at = self._due - _FRAME_S + self._refresh_s  # counted from the last packet sent
        while not self._queue and self.readyState == "live":
            self._arrived.clear()
            remaining = refresh_at - self._clock()
            if remaining <= 0:
                break
            try:
                async with asyncio.timeout(remaining):
                    await self._arrived.wait()
            except TimeoutError:
                break
        now = self._clock()
        self._pts += max(0, round((now - self._due) * self.sample_rate))
        self._due = now
        self._flushed = False

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
        if self._quiet and not queue:
            assert self._dtx is not None
            self.stats.dtx_packets += 1
            return self._dtx  # silence goes on: tell the receiver again
        self._quiet = False
        if queue:
            frame = queue.popleft()
            if not self._playing:
                self._playing = True
                self.stats.talkspurts += 1
            self._silent_run = 0
            self.stats.frames += 1
            if len(queue) < self._max_frames:
                self._room.set()
            return self._encoder.encode(frame)
        self._silent_run += 1
        if self._dtx is not None and self._silent_run > DTX_HANGOVER:
            self._quiet = True
            self.stats.dtx_packets += 1
            return self._dtx
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
