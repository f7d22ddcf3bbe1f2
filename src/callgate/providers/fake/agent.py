"""Scripted fake agent brains: replies streamed token by token with delays on the clock.

:class:`FakeAgent` implements :class:`AgentEngine` (what the pipeline talks to); :class:`FakeLLM`
implements :class:`LLM` for code that drives a language model. Both record what they were asked and how
each stream ended (completed or cancelled), so tests can assert that barge-in cancelled in-flight work.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass

from callgate.clock import Clock
from callgate.pipeline.interfaces import (
    LLM,
    AgentEngine,
    AgentEvent,
    AgentText,
    ChatMessage,
    LLMCapabilities,
    LLMChunk,
    ToolSpec,
)

_TOKEN = re.compile(r"\S+\s*")


def tokens(text: str) -> list[str]:
    """Split text the way the fakes stream it: one word plus its trailing space per token."""
    return _TOKEN.findall(text)


@dataclass(frozen=True, slots=True)
class ScriptedReply:
    text: str = ""
    first_token_delay: float = 0.2
    token_delay: float = 0.02
    before: tuple[AgentEvent, ...] = ()
    """Events yielded before any text (e.g. AgentData)."""
    after: tuple[AgentEvent, ...] = ()
    """Events yielded after the text (e.g. AgentEndCall, AgentTransfer)."""


def _as_reply(item: ScriptedReply | str) -> ScriptedReply:
    return item if isinstance(item, ScriptedReply) else ScriptedReply(text=item)


class _StreamStats:
    def __init__(self) -> None:
        self.active = 0
        self.completed = 0
        self.cancelled = 0


class FakeAgent(AgentEngine, _StreamStats):
    def __init__(
        self,
        clock: Clock,
        replies: Iterable[ScriptedReply | str] = (),
        *,
        greeting: ScriptedReply | str | None = None,
    ) -> None:
        _StreamStats.__init__(self)
        self._clock = clock
        self._replies = [_as_reply(r) for r in replies]
        self._greeting = _as_reply(greeting) if greeting is not None else None
        self.respond_calls: list[str] = []
        self.interrupted_with: list[str] = []
        """The ``spoken_text`` of every :meth:`on_interrupted` call."""
        self.taken_back: list[str] = []
        """The words of every answered turn :meth:`take_back` forgot."""
        self._last: ScriptedReply | None = None

    def greet(self) -> AsyncIterator[AgentEvent]:
        return self._play(self._greeting or ScriptedReply(first_token_delay=0.0))

    def respond(self, user_text: str) -> AsyncIterator[AgentEvent]:
        self.respond_calls.append(user_text)
        script = self._replies.pop(0) if self._replies else ScriptedReply()
        self._last = script
        return self._play(script)

    def on_interrupted(self, spoken_text: str) -> None:
        self.interrupted_with.append(spoken_text)

    def take_back(self) -> bool:
        """The last answer's script goes back to the front of the queue (a script that ends or transfers
        the call cannot be taken back)."""
        script, self._last = self._last, None
        if script is None or script.after:
            return False
        self._replies.insert(0, script)
        self.taken_back.append(self.respond_calls[-1])
        return True

    async def _play(self, script: ScriptedReply) -> AsyncIterator[AgentEvent]:
        self.active += 1
        try:
            for event in script.before:
                yield event
            if script.text:
                await self._clock.sleep(script.first_token_delay)
                for i, token in enumerate(tokens(script.text)):
                    if i:
                        await self._clock.sleep(script.token_delay)
                    yield AgentText(token)
            for event in script.after:
                yield event
            self.completed += 1
        except (GeneratorExit, asyncio.CancelledError):
            self.cancelled += 1
            raise
        finally:
            self.active -= 1


class FakeLLM(LLM, _StreamStats):
    """Streams the scripted replies, one per :meth:`chat` call, as text chunks."""

    def __init__(self, clock: Clock, replies: Iterable[ScriptedReply | str] = ()) -> None:
        _StreamStats.__init__(self)
        self.capabilities = LLMCapabilities(streaming=True, tools=False)
        self._clock = clock
        self._replies = [_as_reply(r) for r in replies]
        self.requests: list[list[ChatMessage]] = []

    def chat(
        self, messages: Sequence[ChatMessage], *, tools: Sequence[ToolSpec] = ()
    ) -> AsyncIterator[LLMChunk]:
        self.requests.append(list(messages))
        script = self._replies.pop(0) if self._replies else ScriptedReply()
        return self._stream(script)

    async def _stream(self, script: ScriptedReply) -> AsyncIterator[LLMChunk]:
        self.active += 1
        try:
            await self._clock.sleep(script.first_token_delay)
            for i, token in enumerate(tokens(script.text)):
                if i:
                    await self._clock.sleep(script.token_delay)
                yield LLMChunk(text=token)
            self.completed += 1
        except (GeneratorExit, asyncio.CancelledError):
            self.cancelled += 1
            raise
        finally:
            self.active -= 1
