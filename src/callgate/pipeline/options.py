"""Pipeline options, the output protocol the transport implements, and the pipeline's counters."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Literal, Protocol

from callgate.errors import ConfigError
from callgate.pipeline.frames import PipelineEvent

Mode = Literal["audio", "text", "audio_text"]
MODES: tuple[Mode, ...] = ("audio", "text", "audio_text")

INPUT_SAMPLE_RATE = 16000
"""Caller audio handed to :meth:`ConversationPipeline.push_audio` is always 16 kHz mono PCM16."""


class PipelineOutput(Protocol):
    """Where the pipeline sends agent audio and events; implemented by each transport."""

    async def send_audio(self, pcm16: bytes) -> None:
        """One 20 ms frame of agent audio at ``PipelineOptions.output_sample_rate``, sent in real time."""
        ...

    async def send_event(self, event: PipelineEvent) -> None: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class PipelineOptions:
    """Tuning of one call's pipeline. Validates itself; raises :class:`ConfigError`."""

    mode: Mode = "audio"
    """Initial output mode; switch with ``set_mode``."""
    output_sample_rate: int = 16000
    frame_ms: int = 20
    language: str = "en"

    vad_threshold: float = 0.5
    """Speech probability at or above which a frame counts as speech."""
    min_speech_ms: int = 100
    """Speech shorter than this is noise (a click, a cough) and never starts a turn."""
    end_of_turn_silence_ms: int = 550
    """Silence after speech that ends the caller's turn."""
    early_end_silence_ms: int = 250
    """After this much silence the utterance is transcribed (batch STT); if the words are a finished
    sentence the turn ends then, without waiting for ``end_of_turn_silence_ms``. 0 (or a value not below
    ``end_of_turn_silence_ms``): never early."""
    preroll_ms: int = 200
    """Audio kept from before the detected speech start, so STT hears the first syllable."""
    max_utterance_ms: int = 30_000
    """An utterance this long is ended even without a pause."""

    allow_interruptions: bool = True
    interruption_min_speech_ms: int = 250
    """Continuous caller speech needed to cut the agent off (guards against coughs and echo)."""

    max_input_buffer_ms: int = 1000
    """Caller audio queued beyond this is dropped, oldest first, and counted."""
    late_frame_ms: int = 40
    """An output frame sent this long after its scheduled time counts as late."""
    max_sentence_chars: int = 250
    """Text without a sentence end is cut for TTS after this many characters."""
    first_clause_chars: int = 24
    """A reply's first sentence is cut for TTS at its first comma (or ``;``, ``:``, dash) after this many
    characters, so its audio starts after a phrase; 0: whole sentences only."""

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"mode must be one of {MODES}, not {self.mode!r}")
        if self.output_sample_rate <= 0 or self.frame_ms <= 0:
            raise ConfigError("output_sample_rate and frame_ms must be positive")
        for rate in (self.output_sample_rate, INPUT_SAMPLE_RATE):
            if (rate * self.frame_ms) % 1000:
                raise ConfigError(f"{self.frame_ms} ms is not a whole number of samples at {rate} Hz")
        if not 0.0 < self.vad_threshold <= 1.0:
            raise ConfigError("vad_threshold must be in (0, 1]")
        for f in fields(self):
            if f.name.endswith("_ms") and f.name != "frame_ms":
                value = getattr(self, f.name)
                if value < 0:
                    raise ConfigError(f"{f.name} must not be negative")
        if self.end_of_turn_silence_ms < self.frame_ms:
            raise ConfigError("end_of_turn_silence_ms must be at least one frame")

        if self.max_sentence_chars < 20:
            raise ConfigError("max_sentence_chars must be at least 20")


@dataclass(slots=True)
class PipelineMetrics:
    """Counters of one pipeline, read by the session for export. Only the pipeline writes them."""

    input_chunks: int = 0
    input_dropped_chunks: int = 0
    input_dropped_ms: float = 0.0
    """Caller audio discarded because the pipeline fell behind."""
    frames_sent: int = 0
    late_frames: int = 0
    """Output frames sent more than ``late_frame_ms`` after their scheduled time."""
    max_output_lag_ms: float = 0.0
    interruptions: int = 0
    user_turns: int = 0
    agent_turns: int = 0
    stt_failures: int = 0
    reply_failures: int = 0

    def snapshot(self) -> dict[str, float]:
        return {f.name: float(getattr(self, f.name)) for f in fields(self)}
