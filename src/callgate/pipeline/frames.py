"""Typed frames: what moves through the pipeline and what it reports to its output.

Two kinds, as in pipecat:

* :class:`SystemFrame` — urgent. Delivered at once by a direct call, never queued behind audio or text
  (barge-in must not wait for a second of queued TTS audio to drain).
* :class:`DataFrame` — ordered. Travels through queues in sequence; an interruption discards every data
  frame still in flight.

The frames the pipeline sends to :meth:`PipelineOutput.send_event` form :data:`PipelineEvent`; the others
are internal to the pipeline.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal


@dataclass(frozen=True, slots=True)
class Frame:
    """Base of every frame."""


@dataclass(frozen=True, slots=True)
class SystemFrame(Frame):
    """Urgent: handled immediately, out of band."""


@dataclass(frozen=True, slots=True)
class DataFrame(Frame):
    """Ordered: queued and processed in sequence; dropped by an interruption."""


# --------------------------------------------------------------------------- turn records


@dataclass(frozen=True, slots=True)
class TurnLatency:
    """Where the time went between the caller falling silent and the agent's first audio, in ms.

    A field is None when the stage did not happen (a typed message has no endpointing or STT; a text-mode
    reply has no TTS).
    """

    endpointing_ms: float | None = None
    """Caller's last speech frame -> turn-end decision."""
    stt_ms: float | None = None
    """Turn-end decision -> final transcript."""
    agent_first_token_ms: float | None = None
    """Final transcript -> first agent text."""
    tts_first_audio_ms: float | None = None
    """First sentence handed to TTS -> first audio chunk back."""
    total_ms: float | None = None
    """Caller's last speech frame -> first agent audio frame sent."""

    def as_dict(self) -> dict[str, float | None]:
        return {
            "endpointing_ms": self.endpointing_ms,
            "stt_ms": self.stt_ms,
            "agent_first_token_ms": self.agent_first_token_ms,
            "tts_first_audio_ms": self.tts_first_audio_ms,
            "total_ms": self.total_ms,
        }


@dataclass(frozen=True, slots=True)
class BargeIn:
    """What the caller's sound over the agent did to it, and why."""

    outcome: Literal["resumed", "interrupted"]
    reason: Literal[
        "noise", "no_words", "backchannel", "slow_words", "long_speech", "words", "continued", "text", "turn"
    ]
    """resumed: ``noise`` (too short to be speech), ``no_words`` (speech STT heard nothing in),
    ``backchannel`` ("uh-huh"), ``slow_words`` (the caller had finished and their words were not known
    ``held_wait_ms`` later); interrupted: ``long_speech`` (longer than any backchannel), ``words``
    (more than a backchannel), ``continued`` (the caller went on with the turn this answered, within
    ``continue_window_ms`` of its end: answered again with all their words), ``text`` (a typed
    message), ``turn`` (a finished caller turn)."""
    held_ms: float | None = None
    """How long the agent's audio was held before the decision; None if it was never held."""
    words: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"outcome": self.outcome, "reason": self.reason, "held_ms": self.held_ms, "words": self.words}


@dataclass(frozen=True, slots=True)
class TurnRecord:
    """One finished turn of the conversation, as it should be stored."""

    role: Literal["user", "agent"]
    text: str
    """For the agent: only what the caller actually heard (or read, in text mode)."""
    started_at: datetime
    ended_at: datetime
    interrupted: bool = False
    latency: TurnLatency | None = None
    """Agent turns only."""
    barge_ins: tuple[BargeIn, ...] = ()
    """Agent turns only: each time the caller's sound held the agent's audio, and what came of it (the
    last one is why an interrupted turn stopped)."""


# --------------------------------------------------------------------------- system frames


@dataclass(frozen=True, slots=True)
class StartInterruption(SystemFrame):
    """Barge-in: stop the agent now and discard in-flight replies."""

    reason: Literal["user_speech", "user_turn", "user_text"] = "user_speech"


@dataclass(frozen=True, slots=True)
class UserStartedSpeaking(SystemFrame):
    pass


@dataclass(frozen=True, slots=True)
class UserStoppedSpeaking(SystemFrame):
    pass


@dataclass(frozen=True, slots=True)
class BotStartedSpeaking(SystemFrame):
    pass


@dataclass(frozen=True, slots=True)
class BotStoppedSpeaking(SystemFrame):
    pass


@dataclass(frozen=True, slots=True)
class BotInterrupted(SystemFrame):
    """The caller cut the agent off; clients must drop any agent audio they still buffer."""


@dataclass(frozen=True, slots=True)
class Metrics(SystemFrame):
    data: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------- data frames


@dataclass(frozen=True, slots=True)
class EndFrame(DataFrame):
    """End of an ordered stream: everything before it has been processed."""


@dataclass(frozen=True, slots=True)
class InputAudio(DataFrame):
    pcm16: bytes
    received_at: float
    """Monotonic time the chunk arrived."""


@dataclass(frozen=True, slots=True)
class AgentTextFrame(DataFrame):
    """One sentence of agent text delivered as text, not speech (text mode, or no TTS)."""

    text: str


@dataclass(frozen=True, slots=True)
class TTSStarted(DataFrame):
    text: str


@dataclass(frozen=True, slots=True)
class TTSAudio(DataFrame):
    """Exactly one output frame of agent audio at the output sample rate."""

    pcm16: bytes


@dataclass(frozen=True, slots=True)
class TTSStopped(DataFrame):
    samples: int
    """Output samples the sentence synthesised to, padding included."""


@dataclass(frozen=True, slots=True)
class UserTranscription(DataFrame):
    text: str
    final: bool = True


@dataclass(frozen=True, slots=True)
class BotLLMText(DataFrame):
    """Agent text as it is produced (before TTS)."""

    text: str


@dataclass(frozen=True, slots=True)
class BotTTSText(DataFrame):
    """Agent text at the moment its audio starts playing (or is delivered, in text mode)."""

    text: str


@dataclass(frozen=True, slots=True)
class TurnEnded(DataFrame):
    record: TurnRecord


@dataclass(frozen=True, slots=True)
class CallEndRequested(DataFrame):
    """The agent ended the call; everything it said has been played."""

    reason: str


@dataclass(frozen=True, slots=True)
class TransferRequested(DataFrame):
    """The agent asked to hand the caller to ``target``; everything it said has been played."""

    target: str


@dataclass(frozen=True, slots=True)
class AgentDataCollected(DataFrame):
    data: dict[str, Any]


PipelineEvent = (
    UserStartedSpeaking
    | UserStoppedSpeaking
    | UserTranscription
    | BotStartedSpeaking
    | BotStoppedSpeaking
    | BotLLMText
    | BotTTSText
    | BotInterrupted
    | Metrics
    | TurnEnded
    | CallEndRequested
    | TransferRequested
    | AgentDataCollected
)
"""Everything :class:`~callgate.pipeline.options.PipelineOutput` receives through ``send_event``."""
