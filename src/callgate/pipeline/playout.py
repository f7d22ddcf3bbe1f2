"""Real-time playout of one agent reply: 20 ms frames paced on the clock.

Frames are sent just in time, frame ``n`` of a burst at ``start + n * frame``, so cancelling the player
stops the agent within one frame and nothing is queued at the client that barge-in would have to chase.
Scheduling from the burst start (not ``sleep(0.02)`` per frame) keeps pacing free of drift.

A burst restarts when the TTS stage falls behind (the player had nothing to send at the scheduled time);
that is an underrun, not lateness. A frame sent more than ``late_frame_ms`` after its scheduled time is
late (the event loop was busy): it is counted and the schedule re-anchored, so one stall does not turn into
a burst of catch-up frames.

:meth:`Player.hold` stops the audio at the next frame without losing any (barge-in that may turn out to
be a backchannel); :meth:`Player.release` goes on from the first frame not sent.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from callgate.clock import Clock
from callgate.pipeline.frames import (
    AgentTextFrame,
    BotStartedSpeaking,
    BotTTSText,
    DataFrame,
    EndFrame,
    TTSAudio,
    TTSStarted,
    TTSStopped,
)
from callgate.pipeline.options import PipelineMetrics, PipelineOptions, PipelineOutput
from callgate.pipeline.spoken import SpokenTracker

FrameHook = Callable[[bytes, float], None]
"""Called with each sent frame and its scheduled monotonic time (recording, activity tracking)."""


class Player:
    """Consumes the ordered frames of one reply from :attr:`queue` until an :class:`EndFrame`."""

    def __init__(
        self,
        *,
        output: PipelineOutput,
        clock: Clock,
        options: PipelineOptions,
        tracker: SpokenTracker,
        metrics: PipelineMetrics,
        speak: Callable[[], bool] = lambda: True,
        on_frame: FrameHook | None = None,
    ) -> None:
        self.queue: asyncio.Queue[DataFrame] = asyncio.Queue()
        self._output = output
        self._clock = clock
        self._tracker = tracker
        self._metrics = metrics
        self._on_frame = on_frame
        self._speak = speak
        self._skipping = False
        self._frame_s = options.frame_ms / 1000.0
        self._late_s = options.late_frame_ms / 1000.0
        self._segment = -1
        self._caption: str | None = None
        self._burst_start: float | None = None
        self._burst_frames = 0
        self._underrun = False
        self.first_frame_at: float | None = None
        """Monotonic time the first audio frame of the reply was sent."""
        self.speaking = False
        self._released = asyncio.Event()
        self._released.set()
        self.last_frame_at: float | None = None
        """Monotonic time the latest audio frame was sent."""

    @property
    def held(self) -> bool:
        return not self._released.is_set()

    def hold(self) -> None:
        """Send no further frame until :meth:`release`; the frames keep queueing."""
        self._released.clear()

    def release(self) -> None:
        self._released.set()

    async def run(self) -> None:
        while True:
            if self.queue.empty():
                self._underrun = True  # sticky until the next frame is played
            frame = await self.queue.get()
            if isinstance(frame, EndFrame):
                break
            if isinstance(frame, TTSStarted):
                self._segment += 1
                self._caption = frame.text
                self._skipping = not self._speak()
                if self._skipping:  # switched to text mode since this sentence went to TTS
                    self._tracker.deliver_as_text(self._segment)
            elif isinstance(frame, TTSAudio):
                if not self._skipping:
                    await self._play(frame.pcm16)
            elif isinstance(frame, TTSStopped):
                self._skipping = False
                if self._caption is not None:  # no audio played for this sentence
                    await self._output.send_event(BotTTSText(self._caption))
                    self._caption = None
            elif isinstance(frame, AgentTextFrame):
                self._segment += 1
                self._tracker.delivered(self._segment)
                await self._output.send_event(BotTTSText(frame.text))
        await self._drain()

    async def _wait_release(self) -> bool:
        """Wait while held; True if it did (the schedule then restarts at the release)."""
        if self._released.is_set():
            return False
        await self._released.wait()
        self._burst_start, self._burst_frames = self._clock.monotonic(), 0
        self._underrun = False
        return True

    async def _play(self, pcm16: bytes) -> None:
        clock = self._clock
        await self._wait_release()
        now = clock.monotonic()
        if self._burst_start is None or (self._underrun and now > self._scheduled()):
            # First frame, or the TTS stage left a gap: start a new burst now.
            self._burst_start, self._burst_frames = now, 0
        self._underrun = False
        due = self._scheduled()
        if due > now:
            await clock.sleep(due - now)
        if await self._wait_release():
            due = self._scheduled()
        lag = clock.monotonic() - due
        self._metrics.max_output_lag_ms = max(self._metrics.max_output_lag_ms, lag * 1000.0)
        if lag > self._late_s:
            self._metrics.late_frames += 1
            self._burst_start, self._burst_frames = clock.monotonic(), 0
            due = self._burst_start
        if not self.speaking:
            self.speaking = True
            self.first_frame_at = clock.monotonic()
            await self._output.send_event(BotStartedSpeaking())
        if self._caption is not None:
            await self._output.send_event(BotTTSText(self._caption))
            self._caption = None
        await self._output.send_audio(pcm16)
        self.last_frame_at = clock.monotonic()
        self._burst_frames += 1
        self._metrics.frames_sent += 1
        self._tracker.played(self._segment, len(pcm16) // 2)
        if self._on_frame is not None:
            self._on_frame(pcm16, due)

    async def _drain(self) -> None:
        """Wait until the last frame sent has had time to play at the client."""
        if self._burst_start is None:
            return
        remaining = self._scheduled() - self._clock.monotonic()
        if remaining > 0:
            await self._clock.sleep(remaining)

    def _scheduled(self) -> float:
        assert self._burst_start is not None
        return self._burst_start + self._burst_frames * self._frame_s
