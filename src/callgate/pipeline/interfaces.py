"""Provider interfaces: small ABCs with a capabilities dataclass each.

Core code never branches on a vendor name; it reads capabilities. Concrete engines live in
``callgate.providers.<name>`` (optional extras, import-guarded); scripted fakes for tests live in
``callgate.providers.fake``.

Audio everywhere in the pipeline is PCM16 little-endian mono ``bytes`` at a stated sample rate.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from callgate.pipeline.tools import ToolHost

# --------------------------------------------------------------------------- VAD


@dataclass(frozen=True, slots=True)
class VADCapabilities:
    sample_rate: int
    """Sample rate the engine wants; callers resample to it."""
    frame_samples: int
    """Samples the engine analyses at a time (e.g. 512 at 16 kHz for Silero)."""


class VADStream(ABC):
    """Per-call VAD state. Not shared between calls; one ``process`` at a time."""

    @abstractmethod
    async def process(self, pcm16: bytes) -> float | None:
        """Feed audio at ``capabilities.sample_rate``; return the speech probability (0..1) of the
        latest complete analysis frame, or None if no frame completed. Buffers partial frames.

        Asynchronous so that an engine can run the model off the event loop (batched across calls);
        frames are analysed in order, each after the previous one's result."""

    def reset(self) -> None:  # noqa: B027 - optional hook
        """Forget internal state (e.g. after a long pause). Not while ``process`` is running."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release per-call resources; the stream is not used afterwards."""


class VAD(ABC):
    capabilities: VADCapabilities

    @abstractmethod
    def create_stream(self) -> VADStream: ...

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release process-wide resources (worker threads); streams created later may restart them."""


# --------------------------------------------------------------------------- end of turn


@dataclass(frozen=True, slots=True)
class EndOfTurnCapabilities:
    sample_rate: int = 16000
    max_audio_ms: int = 8000
    """The model sees at most this much of the end of the utterance; callers may send only that."""


class EndOfTurnModel(ABC):
    """Judges from the caller's audio (its words and its intonation) whether they finished their turn.
    Shared by all calls; an engine may batch requests across calls off the event loop."""

    capabilities: EndOfTurnCapabilities

    @abstractmethod
    async def predict(self, pcm16: bytes) -> float:
        """Probability (0..1) that the caller is done, given their utterance up to and including the
        pause so far, at ``capabilities.sample_rate``. Raises :class:`~callgate.errors.ProviderError`."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release process-wide resources (worker threads)."""


# --------------------------------------------------------------------------- STT


@dataclass(frozen=True, slots=True)
class STTCapabilities:
    sample_rate: int
    streaming: bool = False
    """True if :meth:`STT.stream` gives interim results while the caller speaks."""
    prompt: bool = False
    """True if :meth:`STT.transcribe` heeds its ``prompt``."""


@dataclass(frozen=True, slots=True)
class Transcript:
    text: str
    is_final: bool = True
    confidence: float | None = None
    language: str | None = None


class STTStream(ABC):
    @abstractmethod
    def push(self, pcm16: bytes) -> None: ...

    @abstractmethod
    async def finish(self) -> Transcript:
        """End of utterance: return the final transcript."""

    @abstractmethod
    def interim(self) -> AsyncIterator[Transcript]: ...

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release resources."""


class STT(ABC):
    capabilities: STTCapabilities

    @abstractmethod
    async def transcribe(self, pcm16: bytes, *, language: str = "en", prompt: str = "") -> Transcript:
        """Transcribe one whole utterance at ``capabilities.sample_rate``. ``prompt``: text written the
        way the utterance may well be (e.g. "Uh-huh. Mm-hmm." over the agent), for engines that take
        one (Whisper's initial prompt, OpenAI's ``prompt``); the others ignore it."""

    def stream(self, *, language: str = "en") -> STTStream:
        raise NotImplementedError(f"{type(self).__name__} does not stream")

    def busy(self) -> bool:
        """True while the engine has work waiting (an embedded model's backlog): optional work, such as
        transcribing a short pause speculatively (``transcribe_pause_ms``), is then put off."""
        return False

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release resources."""


# --------------------------------------------------------------------------- LLM


@dataclass(frozen=True, slots=True)
class ChatMessage:
    role: Literal["system", "user", "assistant", "tool"]
    content: str
    name: str | None = None
    tool_call_id: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    """Assistant messages: the tools the model called (each answered by a ``tool`` message)."""


@dataclass(frozen=True, slots=True)
class ToolSpec:
    name: str
    description: str
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ToolCall:
    id: str
    name: str
    arguments: dict[str, Any]
    error: str | None = None
    """Set when the model's arguments could not be read (not JSON, not an object): the call is
    answered with this error instead of being run."""
    raw_arguments: str | None = None
    """The arguments exactly as the model sent them, when they could not be read."""


@dataclass(frozen=True, slots=True)
class LLMChunk:
    """One streamed piece of an LLM answer: a text delta and/or completed tool calls."""

    text: str = ""
    tool_calls: tuple[ToolCall, ...] = ()


@dataclass(frozen=True, slots=True)
class LLMCapabilities:
    streaming: bool = True
    tools: bool = False


class LLM(ABC):
    capabilities: LLMCapabilities

    @abstractmethod
    def chat(
        self, messages: Sequence[ChatMessage], *, tools: Sequence[ToolSpec] = ()
    ) -> AsyncIterator[LLMChunk]:
        """Stream the answer. Cancelling the iteration cancels the request."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release resources."""


# --------------------------------------------------------------------------- TTS


@dataclass(frozen=True, slots=True)
class TTSCapabilities:
    sample_rate: int
    streaming: bool = False
    """True if audio starts before the whole text is synthesised."""


class TTS(ABC):
    capabilities: TTSCapabilities

    @abstractmethod
    def synthesize(self, text: str) -> AsyncIterator[bytes]:
        """PCM16 mono at ``capabilities.sample_rate``, in chunks. Cancelling stops synthesis."""

    def prefetch(self, text: str) -> None:  # noqa: B027 - optional hook
        """``text`` will probably be asked for soon: an engine that keeps what it synthesised (a cache)
        may start now, so that :meth:`synthesize` then answers at once. Called on the event loop; must
        return at once. By default nothing happens."""

    def synthesize_ahead(self, text: str) -> AsyncIterator[bytes]:
        """:meth:`synthesize` for a guess (a sentence synthesised before anyone asks for it). An engine
        with workers of its own runs guesses apart from the answers callers wait for, so that a wrong
        guess never holds up a real answer. By default the same as :meth:`synthesize`."""
        return self.synthesize(text)

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release resources."""


# --------------------------------------------------------------------------- agent brain


@dataclass(frozen=True, slots=True)
class AgentText:
    """A piece of what the agent says (streamed)."""

    text: str


@dataclass(frozen=True, slots=True)
class AgentEndCall:
    """The agent ends the call after saying what it has said."""

    reason: str = "agent_ended"
    interruptible: bool = False
    """The caller may still talk over what is said before it (the silence timeout's goodbye): a caller
    who does goes on with the call. By default the goodbye is played out in full."""


@dataclass(frozen=True, slots=True)
class AgentTransfer:
    """The agent hands the caller to a human at ``target``."""

    target: str


@dataclass(frozen=True, slots=True)
class AgentData:
    """Structured data the agent collected (flow slots, tool results) to store on the call."""

    data: dict[str, Any]


AgentEvent = AgentText | AgentEndCall | AgentTransfer | AgentData


class AgentEngine(ABC):
    """What decides what the agent says: a scripted flow or an LLM with a prompt."""

    @abstractmethod
    def greet(self) -> AsyncIterator[AgentEvent]:
        """The opening (``initial_message``); may yield nothing."""

    @abstractmethod
    def respond(self, user_text: str) -> AsyncIterator[AgentEvent]:
        """React to one caller turn. Cancelling the iteration abandons the answer."""

    async def remind(self, text: str) -> AsyncIterator[AgentEvent]:
        """The line has been quiet for a while after the agent spoke: say ``text`` ("Are you still
        there?") without changing where the conversation stands. An engine that keeps a history notes
        it there; a flow stays at its step, so the caller's next words answer what it asked."""
        yield AgentText(text)

    def on_interrupted(self, spoken_text: str) -> None:  # noqa: B027 - optional hook
        """The previous answer was cut off after ``spoken_text``; keep history truthful."""

    def take_back(self) -> bool:
        """Forget the last :meth:`respond` (the caller's words and the answer to them) as if it had not
        run: the caller went on talking right after their turn ended and cut that answer off, so the
        pipeline asks again with all their words together. Called after :meth:`on_interrupted`. False
        (the default) when the engine cannot, e.g. the answer started a tool or ended the call: the new
        words are then answered on their own."""
        return False

    def prepare(self, user_text: str) -> None:  # noqa: B027 - optional hook
        """The caller paused after ``user_text``; their turn may end there. An engine whose answer takes
        time (an LLM request) may start it now, without side effects, and use it if :meth:`respond`
        is then called with the same words and nothing else changed; otherwise it must drop it.
        Called on the event loop; must return at once."""

    def drop_prepared(self) -> None:  # noqa: B027 - optional hook
        """The caller went on after the pause: an answer :meth:`prepare` started is not needed."""

    def predict_reply(self, user_text: str) -> str | None:
        """What the agent would say if the caller's turn ended now with ``user_text``, when that is
        known at once and without side effects (a flow's next step); None otherwise (an LLM). The
        pipeline has its first sentence synthesised during the pause. Called on the event loop."""
        return None

    def expected_answer(self, text: str) -> bool:
        """True if ``text`` (the caller's words so far) already answers what the agent waits for (a flow
        step's slot: "tomorrow", "at three pm", "yes"): the turn may end at the first short pause.
        Called on the event loop while the caller pauses; must be quick."""
        return False

    def bind(self, host: ToolHost) -> None:  # noqa: B027 - optional hook
        """The call's tool host, given once before the first turn (agents without tools ignore it)."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """The call is over: stop what the agent still runs (tool calls in flight)."""
