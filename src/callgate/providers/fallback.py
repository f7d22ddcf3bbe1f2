"""Fallback: a stage (STT, TTS, LLM) that tries an agent's engines in order, per call.

An agent may list engines per stage (``{"engine": "deepgram", …, "fallback": [{"engine": "whisper"}]}``).
Each call gets one :class:`FallbackSTT` / :class:`FallbackTTS` / :class:`FallbackLLM` over the built
engines. The stage uses one engine at a time and moves to the next — for the rest of the call, never
back — when the current one

- could not be built (its credential was deleted, its package is missing),
- fails to connect or errors (any :class:`~callgate.errors.ProviderError`, or any other exception),
- or gives no first result (a transcript, the first audio, the first token) within
  ``first_result_timeout_s`` (only while there is a next engine to move to).

A failure before the first result is retried on the next engine, so the caller loses nothing:
an utterance is transcribed again from its buffered audio, a sentence synthesised again, a question
asked again. A failure after output began keeps what was produced: a TTS sentence is cut short and the
next sentence is spoken by the next engine; an LLM answer cut off mid-way is asked again of the next
engine, whose whole answer follows the part already said.

Every move is a :class:`Switch`, recorded in the call's :class:`SwitchLog` (the session turns each into
a call event and a webhook). Nothing here knows a vendor: engines are named by their settings' label.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from callgate.errors import ProviderError
from callgate.pipeline.audio import StreamResampler, resample
from callgate.pipeline.interfaces import (
    LLM,
    STT,
    TTS,
    ChatMessage,
    LLMCapabilities,
    LLMChunk,
    STTCapabilities,
    STTStream,
    ToolSpec,
    Transcript,
    TTSCapabilities,
)

__all__ = ["Candidate", "FallbackLLM", "FallbackSTT", "FallbackTTS", "Switch", "SwitchLog"]

log = logging.getLogger(__name__)

E = TypeVar("E")


@dataclass(frozen=True, slots=True)
class Switch:
    """A stage moved from one engine to the next."""

    role: str
    from_engine: str
    to_engine: str
    reason: str
    at_start: bool
    """True if the engine never worked in this call (it failed to build, connect or answer at once)."""


class SwitchLog:
    """The switches of one call, handed to whoever subscribes (the session), earlier ones first."""

    def __init__(self) -> None:
        self.switches: list[Switch] = []
        self._listener: Callable[[Switch], None] | None = None

    def record(self, switch: Switch) -> None:
        log.warning(
            "%s engine %s failed (%s); continuing on %s",
            switch.role, switch.from_engine, switch.reason, switch.to_engine,
        )  # fmt: skip
        self.switches.append(switch)
        if self._listener is not None:
            self._listener(switch)

    def subscribe(self, listener: Callable[[Switch], None]) -> None:
        self._listener = listener
        for switch in self.switches:
            listener(switch)


@dataclass(frozen=True, slots=True)
class Candidate(Generic[E]):
    """One engine of a stage: built, or the reason it could not be."""

    name: str
    engine: E | None
    error: str | None = None


class NoEngineLeft(ProviderError):
    """Every engine of a stage has failed in this call."""


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "no first result in time"
    detail = getattr(exc, "detail", None) or str(exc) or type(exc).__name__
    return str(detail)[:300]


class _Chain(Generic[E]):
    def __init__(
        self, role: str, candidates: Sequence[Candidate[E]], *, first_result_timeout_s: float, log_: SwitchLog
    ) -> None:
        if not candidates:
            raise ValueError("a stage needs at least one engine")
        self.role = role
        self.candidates = list(candidates)
        self.timeout = first_result_timeout_s
        self.log = log_
        self.index = 0
        self.worked: set[int] = set()
        while self.current.engine is None and self.index + 1 < len(self.candidates):
            self._advance(self.current.error or "could not be built")

    @property
    def current(self) -> Candidate[E]:
        return self.candidates[self.index]

    @property
    def has_next(self) -> bool:
        return self.index + 1 < len(self.candidates)

    def engine(self) -> E:
        engine = self.current.engine
        if engine is None:
            raise NoEngineLeft(f"no {self.role} engine can run: {self.current.error}")
        return engine

    def first_timeout(self) -> float | None:
        """How long the current engine may take to its first result (None: no next engine, no limit)."""
        return self.timeout if self.has_next else None

    def ok(self, index: int) -> None:
        self.worked.add(index)

    def fail(self, index: int, exc: BaseException) -> bool:
        """Engine ``index`` failed; True if the stage moved on (or already had) to another engine."""
        if index != self.index:
            return True  # a concurrent request already moved the stage on
        if not self.has_next:
            return False
        self._advance(_reason(exc))
        return True

    def _advance(self, reason: str) -> None:
        old = self.index
        self.index += 1
        while self.current.engine is None and self.has_next:
            self.index += 1
        self.log.record(
            Switch(
                role=self.role,
                from_engine=self.candidates[old].name,
                to_engine=self.current.name,
                reason=reason,
                at_start=old not in self.worked,
            )
        )


async def _first(agen: AsyncIterator[E], within: float | None) -> E:
    """The first item of ``agen`` within ``within`` seconds; StopAsyncIteration if it is empty."""
    return await asyncio.wait_for(anext(agen), within)


# --------------------------------------------------------------------------- STT


class FallbackSTT(STT):
    """STT over a call's engines in order. Audio in is always at ``sample_rate`` (16 kHz): an engine
    that wants another rate gets it resampled."""

    def __init__(
        self,
        candidates: Sequence[Candidate[STT]],
        *,
        switches: SwitchLog,
        first_result_timeout_s: float,
        sample_rate: int = 16000,
    ) -> None:
        self._chain = _Chain("stt", candidates, first_result_timeout_s=first_result_timeout_s, log_=switches)
        self._rate = sample_rate

    @property
    def capabilities(self) -> STTCapabilities:  # type: ignore[override]
        engine = self._chain.current.engine
        if engine is None:
            return STTCapabilities(sample_rate=self._rate)
        caps = engine.capabilities
        return STTCapabilities(sample_rate=self._rate, streaming=caps.streaming, prompt=caps.prompt)

    @property
    def engine_name(self) -> str:
        return self._chain.current.name

    async def transcribe(self, pcm16: bytes, *, language: str = "en", prompt: str = "") -> Transcript:
        while True:
            index, engine = self._chain.index, self._chain.engine()
            audio = resample(pcm16, self._rate, engine.capabilities.sample_rate)
            try:
                result = await asyncio.wait_for(
                    engine.transcribe(audio, language=language, prompt=prompt), self._chain.first_timeout()
                )
            except Exception as exc:
                if not self._chain.fail(index, exc):
                    raise
                continue
            self._chain.ok(index)
            return result

    def stream(self, *, language: str = "en") -> STTStream:
        return _FallbackStream(self, self._chain, language=language)

    async def aclose(self) -> None:
        """The engines are the registry's (shared); nothing of this call's to release."""


class _FallbackStream(STTStream):
    """The current engine's stream, with the utterance's audio kept so that another engine can
    transcribe it if this one fails."""

    def __init__(
        self, owner: FallbackSTT, chain: _Chain[STT], *, language: str, max_seconds: float = 30.0
    ) -> None:
        self._owner, self._chain, self._language = owner, chain, language
        self._index = chain.index
        engine = chain.engine()
        self._audio = bytearray()
        self._max_bytes = int(max_seconds * owner.capabilities.sample_rate) * 2
        self._resampler = StreamResampler(owner.capabilities.sample_rate, engine.capabilities.sample_rate)
        self._inner: STTStream | None = None
        self._failure: BaseException | None = None
        try:
            self._inner = engine.stream(language=language)
        except Exception as exc:
            self._failure = exc

    def push(self, pcm16: bytes) -> None:
        self._audio += pcm16
        if len(self._audio) > self._max_bytes:
            del self._audio[: len(self._audio) - self._max_bytes]
        if self._inner is not None and self._failure is None:
            try:
                self._inner.push(self._resampler.process(pcm16))
            except Exception as exc:
                self._failure = exc

    async def interim(self) -> AsyncIterator[Transcript]:
        if self._inner is None:
            return
        try:
            async for result in self._inner.interim():
                yield result
        except Exception as exc:  # finish() decides what to do; interim results just stop
            self._failure = self._failure or exc

    async def finish(self) -> Transcript:
        inner = self._inner
        if inner is not None and self._failure is None:
            try:
                inner.push(self._resampler.flush())
                result = await asyncio.wait_for(inner.finish(), self._chain.first_timeout())
            except Exception as exc:
                self._failure = exc
            else:
                self._chain.ok(self._index)
                return result
        assert self._failure is not None
        if not self._chain.fail(self._index, self._failure):
            raise self._failure
        # The next engines transcribe the utterance's audio in one go (and fall back in turn).
        return await self._owner.transcribe(bytes(self._audio), language=self._language)

    async def aclose(self) -> None:
        inner, self._inner = self._inner, None
        if inner is not None:
            try:
                await inner.aclose()
            except Exception:
                log.warning("closing a failed STT stream failed", exc_info=True)


# --------------------------------------------------------------------------- TTS


class FallbackTTS(TTS):
    """TTS over a call's engines in order; audio out is always at the first engine's rate."""

    def __init__(
        self, candidates: Sequence[Candidate[TTS]], *, switches: SwitchLog, first_result_timeout_s: float
    ) -> None:
        self._chain = _Chain("tts", candidates, first_result_timeout_s=first_result_timeout_s, log_=switches)
        built = [c.engine for c in candidates if c.engine is not None]
        rate = built[0].capabilities.sample_rate if built else 16000
        self.capabilities = TTSCapabilities(
            sample_rate=rate, streaming=any(e.capabilities.streaming for e in built)
        )

    def prefetch(self, text: str) -> None:
        """Handed to the engine in use (its cache keeps the sentence)."""
        engine = self._chain.current.engine
        if engine is not None:
            engine.prefetch(text)

    async def synthesize(self, text: str) -> AsyncIterator[bytes]:
        while True:
            index, engine = self._chain.index, self._chain.engine()
            resampler = StreamResampler(engine.capabilities.sample_rate, self.capabilities.sample_rate)
            agen = engine.synthesize(text)
            produced = False
            try:
                try:
                    chunk = await _first(agen, self._chain.first_timeout())
                except StopAsyncIteration:
                    self._chain.ok(index)
                    return
                self._chain.ok(index)
                produced = True
                yield resampler.process(chunk)
                async for chunk in agen:
                    yield resampler.process(chunk)
                yield resampler.flush()
                return
            except Exception as exc:
                if not self._chain.fail(index, exc):
                    raise
                if produced:
                    return  # the sentence is cut short; the next one is the next engine's
            finally:
                await agen.aclose()  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- LLM


class FallbackLLM(LLM):
    """An LLM over a call's engines in order."""

    def __init__(
        self, candidates: Sequence[Candidate[LLM]], *, switches: SwitchLog, first_result_timeout_s: float
    ) -> None:
        self._chain = _Chain("llm", candidates, first_result_timeout_s=first_result_timeout_s, log_=switches)
        built = [c.engine for c in candidates if c.engine is not None]
        self.capabilities = LLMCapabilities(
            streaming=all(e.capabilities.streaming for e in built) if built else True,
            tools=all(e.capabilities.tools for e in built) if built else False,
        )

    async def chat(
        self, messages: Sequence[ChatMessage], *, tools: Sequence[ToolSpec] = ()
    ) -> AsyncIterator[LLMChunk]:
        while True:
            index, engine = self._chain.index, self._chain.engine()
            agen = engine.chat(messages, tools=tools)
            try:
                try:
                    chunk = await _first(agen, self._chain.first_timeout())
                except StopAsyncIteration:
                    self._chain.ok(index)
                    return
                self._chain.ok(index)
                yield chunk
                async for chunk in agen:
                    yield chunk
                return
            except Exception as exc:
                if not self._chain.fail(index, exc):
                    raise
            finally:
                await agen.aclose()  # type: ignore[attr-defined]
