"""An in-memory :class:`PipelineOutput` that records every frame and event with its clock time."""

from __future__ import annotations

from typing import TypeVar

from callgate.clock import Clock
from callgate.pipeline.frames import PipelineEvent

E = TypeVar("E")


class RecordingOutput:
    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self.audio: list[tuple[float, bytes]] = []
        """(monotonic time sent, frame)"""
        self.events: list[tuple[float, PipelineEvent]] = []

    async def send_audio(self, pcm16: bytes) -> None:
        self.audio.append((self._clock.monotonic(), pcm16))

    async def send_event(self, event: PipelineEvent) -> None:
        self.events.append((self._clock.monotonic(), event))

    @property
    def audio_bytes(self) -> bytes:
        return b"".join(frame for _, frame in self.audio)

    def names(self) -> list[str]:
        """Event class names in order, e.g. for asserting sequences."""
        return [type(e).__name__ for _, e in self.events]

    def of_type(self, kind: type[E]) -> list[E]:
        return [e for _, e in self.events if isinstance(e, kind)]

    def times_of(self, kind: type[object]) -> list[float]:
        return [t for t, e in self.events if isinstance(e, kind)]
