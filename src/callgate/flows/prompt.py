"""Prompt agents: an LLM with a system prompt, chat history and the agent's tools.

Works with any :class:`~callgate.pipeline.interfaces.LLM`. Each caller turn is one or more LLM passes:
the model's text is spoken as it streams; when it calls tools (several at once if it likes), they run
— ``http``, ``client`` and ``send_dtmf`` on the call's :class:`~callgate.pipeline.tools.ToolHost`,
built-ins here — and their results go back to the model for another pass, up to ``max_tool_rounds``.

Built-ins: ``end_call`` (always available: the call ends after what was said), ``transfer_call`` (to the
agent's ``target``, or to one of its ``destinations`` the model names; never to a value the model
invents, so a caller cannot talk it into dialling elsewhere), ``send_dtmf`` and ``wait`` (the agent
stays quiet until the caller speaks again).

Barge-in during a tool call abandons the answer, not the tool: a request already sent completes, is
recorded (``interrupted``), and its result reaches the model before the caller's next turn.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from callgate.clock import utcnow
from callgate.flows.text import render
from callgate.flows.tool_args import argument_error
from callgate.pipeline.interfaces import (
    LLM,
    AgentEndCall,
    AgentEngine,
    AgentEvent,
    AgentText,
    AgentTransfer,
    ChatMessage,
    LLMChunk,
    ToolCall,
    ToolSpec,
)
from callgate.pipeline.tools import (
    ToolDefinition,
    ToolHost,
    ToolOutcome,
    ToolRecord,
    instant_record,
    run_recorded,
)

__all__ = ["END_CALL", "TRANSFER_CALL", "PromptAgent"]

log = logging.getLogger(__name__)

END_CALL = ToolSpec(
    name="end_call",
    description="End the phone call. Say goodbye first, in the same answer. Use it when the caller is "
    "done, says goodbye, or asks to hang up.",
    parameters={
        "type": "object",
        "properties": {"reason": {"type": "string", "description": "Why the call ends, in a few words."}},
    },
)
TRANSFER_CALL = ToolSpec(
    name="transfer_call",
    description="Transfer the caller to a human colleague. Tell the caller you are transferring them "
    "first, in the same answer. Use it when the caller asks for a person or you cannot help.",
    parameters={"type": "object", "properties": {}},
)
SEND_DTMF = ToolSpec(
    name="send_dtmf",
    description="Press keys on the phone line (e.g. to get through a phone menu).",
    parameters={
        "type": "object",
        "properties": {"digits": {"type": "string", "pattern": "^[0-9*#A-Da-d]{1,32}$"}},
        "required": ["digits"],
    },
)
WAIT = ToolSpec(
    name="wait",
    description="The caller asked for a moment (to look something up, to fetch a card): say a short "
    "'take your time' in the same answer, then stay quiet until they speak again.",
    parameters={"type": "object", "properties": {}},
)
_BUILT_IN = {s.name: s for s in (END_CALL, TRANSFER_CALL, SEND_DTMF, WAIT)}
_HOSTED = frozenset({"http", "client", "send_dtmf"})
_OK: dict[str, Any] = {"ok": True}


def _norm(text: str) -> str:
    return " ".join(text.split())


def _trimmed(history: list[ChatMessage], max_messages: int) -> list[ChatMessage]:
    """``history`` cut to its last ``max_messages``, starting on a caller turn."""
    excess = len(history) - max_messages
    if excess <= 0:
        return history
    kept = history[excess:]
    while kept and kept[0].role != "user":
        kept.pop(0)
    return kept


class _EarlyAnswer:
    """An LLM answer asked for at a pause, before the caller's turn was known to end (preemptive
    generation). Its chunks are kept until :meth:`PromptAgent.respond` takes them over, or it is
    cancelled. Only the request runs early: tools run when the answer is taken."""

    def __init__(
        self, llm: LLM, messages: list[ChatMessage], specs: tuple[ToolSpec, ...], *, text: str
    ) -> None:
        self.text = text
        self.messages = messages
        self._chunks: asyncio.Queue[LLMChunk | Exception | None] = asyncio.Queue()
        self._task = asyncio.create_task(self._pull(llm, messages, specs), name="llm-early-answer")

    async def _pull(self, llm: LLM, messages: list[ChatMessage], specs: tuple[ToolSpec, ...]) -> None:
        stream: AsyncIterator[LLMChunk] | None = None
        try:
            stream = llm.chat(messages, tools=specs)
            async for chunk in stream:
                self._chunks.put_nowait(chunk)
        except Exception as exc:  # handed to whoever takes the answer
            self._chunks.put_nowait(exc)
            return
        finally:
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                await aclose()
        self._chunks.put_nowait(None)

    async def chunks(self) -> AsyncIterator[LLMChunk]:
        try:
            while (item := await self._chunks.get()) is not None:
                if isinstance(item, Exception):
                    raise item
                yield item
        finally:
            self.cancel()

    def cancel(self) -> None:
        self._task.cancel()


class PromptAgent(AgentEngine):
    """One call's conversation with ``llm``.

    ``prompt`` and ``initial_message`` may use ``{{variables}}``. ``tools`` are the agent's (see
    :func:`callgate.pipeline.tools.definitions`); ``transfer_target`` is a shorthand for a
    ``transfer_call`` tool with that target. ``max_messages`` bounds the history sent with each request
    (the oldest turns are dropped; the system prompt always stays).
    """

    def __init__(
        self,
        llm: LLM,
        *,
        prompt: str,
        variables: Mapping[str, Any] | None = None,
        initial_message: str | None = None,
        transfer_target: str | None = None,
        tools: Sequence[ToolDefinition] = (),
        allow_end_call: bool = True,
        max_messages: int = 60,
        max_tool_rounds: int = 4,
    ) -> None:
        self._llm = llm
        self._values = {k: str(v) for k, v in (variables or {}).items()}
        self._system = ChatMessage(role="system", content=render(prompt, self._values))
        self._initial = render(initial_message, self._values) if initial_message else ""
        self._max_messages = max_messages
        self._max_rounds = max_tool_rounds
        defined = list(tools)
        if transfer_target and not any(t.kind == "transfer_call" for t in defined):
            defined.append(
                ToolDefinition(
                    kind="transfer_call",
                    name="transfer_call",
                    description="",
                    config={"target": transfer_target},
                )
            )
        if allow_end_call and not any(t.kind == "end_call" for t in defined):
            defined.insert(0, ToolDefinition(kind="end_call", name="end_call", description=""))
        self._tools = {t.name: t for t in defined}
        self._specs = tuple(self._spec(t) for t in defined) if llm.capabilities.tools else ()
        self._host: ToolHost | None = None
        self._reply_start = 0
        self._unanswered: list[tuple[ToolCall, asyncio.Task[ToolRecord] | ToolRecord]] = []
        """Tool calls of an interrupted answer whose results the model has not seen yet."""
        self._running: set[asyncio.Task[ToolRecord]] = set()
        self._early: _EarlyAnswer | None = None
        self._asked: ChatMessage | None = None
        """The caller's words the last :meth:`respond` answered (see :meth:`take_back`)."""
        self.early_answers_used = 0
        """Answers whose LLM request started at a pause, before the turn ended (preemptive generation)."""
        self.history: list[ChatMessage] = []
        """The conversation so far (without the system prompt), as the model will next see it."""

    @staticmethod
    def _spec(tool: ToolDefinition) -> ToolSpec:
        if tool.kind == "transfer_call":
            spec = TRANSFER_CALL
            destinations = tool.config.get("destinations") or []
            if destinations and not tool.config.get("target"):
                spec = dataclasses.replace(
                    spec,
                    parameters={
                        "type": "object",
                        "properties": {"target": {"type": "string", "enum": list(destinations)}},
                        "required": ["target"],
                    },
                )
            return dataclasses.replace(spec, description=tool.description or spec.description)
        if tool.kind in _BUILT_IN:
            spec = _BUILT_IN[tool.kind]
            return dataclasses.replace(spec, description=tool.description or spec.description)
        return ToolSpec(name=tool.name, description=tool.description, parameters=tool.parameters)

    @property
    def system_prompt(self) -> str:
        return self._system.content

    @property
    def tool_names(self) -> list[str]:
        return [s.name for s in self._specs]

    def bind(self, host: ToolHost) -> None:
        self._host = host

    async def greet(self) -> AsyncIterator[AgentEvent]:
        self._reply_start = len(self.history)
        if self._initial:
            self.history.append(ChatMessage(role="assistant", content=self._initial))
            yield AgentText(self._initial)

    async def remind(self, text: str) -> AsyncIterator[AgentEvent]:
        """Said as the agent's own message, so that the model knows it asked."""
        self._settle()
        self._asked = None
        self.history.append(ChatMessage(role="assistant", content=text))
        self._trim()
        self._reply_start = len(self.history) - 1
        yield AgentText(text)

    def prepare(self, user_text: str) -> None:
        """Start the LLM request :meth:`respond` would make for ``user_text`` (see
        :meth:`AgentEngine.prepare`); none while an interrupted answer's tool results are pending."""
        self.drop_prepared()
        if self._unanswered:
            return
        history = _trimmed([*self.history, ChatMessage(role="user", content=user_text)], self._max_messages)
        self._early = _EarlyAnswer(self._llm, [self._system, *history], self._specs, text=_norm(user_text))

    def drop_prepared(self) -> None:
        early, self._early = self._early, None
        if early is not None:
            early.cancel()

    def _take_early(self, user_text: str) -> _EarlyAnswer | None:
        """The answer prepared for exactly this turn after exactly this history, if there is one."""
        early, self._early = self._early, None
        if early is None:
            return None
        if early.text == _norm(user_text) and early.messages == [self._system, *self.history]:
            self.early_answers_used += 1
            return early
        early.cancel()
        return None

    async def respond(self, user_text: str) -> AsyncIterator[AgentEvent]:
        pending_tools = bool(self._unanswered)
        self._settle()
        self._asked = ChatMessage(role="user", content=user_text)
        self.history.append(self._asked)
        self._trim()
        early = None if pending_tools else self._take_early(user_text)
        if pending_tools:
            self.drop_prepared()
        self._reply_start = len(self.history)
        self._spoke = self._closed = False
        for round_ in range(self._max_rounds + 1):
            specs = self._specs if round_ < self._max_rounds else ()
            said: list[str] = []
            calls: list[ToolCall] = []
            stream = (
                early.chunks()
                if early is not None and round_ == 0
                else self._llm.chat([self._system, *self.history], tools=specs)
            )
            try:
                async for chunk in stream:
                    if chunk.text:
                        said.append(chunk.text)
                        # A later pass continues what was said: keep its first word apart.
                        gap = " " if self._spoke and len(said) == 1 and not self._closed else ""
                        self._spoke, self._closed = True, False
                        yield AgentText(gap + chunk.text)
                    calls.extend(chunk.tool_calls)
            finally:
                if early is not None and round_ == 0:
                    early.cancel()  # abandoned mid-stream: its request goes too (no-op once done)
                # Also when the answer is abandoned mid-stream: keep what was produced so that
                # on_interrupted() can cut it down to what the caller heard.
                if said and not calls:
                    self.history.append(ChatMessage(role="assistant", content="".join(said)))
            if not calls:
                return
            async for event in self._use_tools("".join(said), calls):
                yield event
            if self._finished:
                return

    async def _use_tools(self, said: str, calls: list[ToolCall]) -> AsyncIterator[AgentEvent]:
        """Run one pass's tool calls; sets :attr:`_finished` when no further pass should follow."""
        self._finished = False
        final: AgentEndCall | AgentTransfer | None = None
        kinds = [t.kind if (t := self._tools.get(c.name)) is not None else None for c in calls]
        waiting = all(kind == "wait" for kind in kinds)
        spoken: list[str] = []
        entries: list[asyncio.Task[ToolRecord] | ToolRecord] = []
        for call in calls:
            tool = self._tools.get(call.name)
            if tool is not None and tool.message and tool.kind in _HOSTED and tool.message not in spoken:
                spoken.append(tool.message)
            outcome, action = self._check(call, tool)
            if outcome is None and tool is not None and tool.kind in _HOSTED:
                task = asyncio.create_task(self._execute(tool, call), name=f"tool-{call.name}")
                self._running.add(task)
                task.add_done_callback(self._running.discard)
                entries.append(task)
                continue
            if action is not None and outcome is None:
                final, outcome = action, ToolOutcome(result=_OK)
            entries.append(self._record(call, tool, outcome or ToolOutcome(result=_OK)))
        content = " ".join(p for p in [said.strip(), *spoken] if p)
        self.history.append(ChatMessage(role="assistant", content=content, tool_calls=tuple(calls)))
        # While tools run, what was said so far must be heard: a trailing space closes its last sentence
        # (the sentence splitter only lets a sentence go once something follows it).
        running = any(isinstance(entry, asyncio.Task) for entry in entries)
        for i, line in enumerate(spoken):
            gap = " " if self._spoke and not self._closed else ""
            end = " " if running and i == len(spoken) - 1 else ""
            self._spoke, self._closed = True, bool(end)
            yield AgentText(gap + line + end)
        if running and self._spoke and not self._closed:
            self._closed = True
            yield AgentText(" ")
        records: list[ToolRecord] = []
        try:
            for entry in entries:
                records.append(await asyncio.shield(entry) if isinstance(entry, asyncio.Task) else entry)
        except asyncio.CancelledError:
            # Barge-in: the answer is abandoned; the tools are not. Their results are recorded when they
            # come, marked interrupted, and given to the model before the caller's next turn.
            self._unanswered = list(zip(calls, entries, strict=True))
            for entry in entries:
                self._record_later(entry)
            raise
        for call, record in zip(calls, records, strict=True):
            if self._host is not None:
                self._host.record_tool(record)
            self.history.append(
                ChatMessage(
                    role="tool", content=record.outcome.for_llm(), tool_call_id=call.id, name=call.name
                )
            )
        if final is not None:
            self._finished = True
            yield final
        elif waiting:
            self._finished = True  # the caller asked for a moment: nothing more to say now

    _finished = False
    _spoke = False
    _closed = False
    """The last text given ended a sentence with a space: the next needs no gap."""

    def _check(
        self, call: ToolCall, tool: ToolDefinition | None
    ) -> tuple[ToolOutcome | None, AgentEndCall | AgentTransfer | None]:
        """An outcome decided without running anything (an error, or a built-in's), and the call
        action a built-in asks for."""
        if tool is None:
            return ToolOutcome(error=f"there is no tool named {call.name!r}"), None
        if call.error is not None:
            return ToolOutcome(error=f"{call.error}; call {call.name} again with a JSON object"), None
        schema = self._spec(tool).parameters
        if (problem := argument_error(schema, call.arguments)) is not None:
            return ToolOutcome(error=problem), None
        if tool.kind in _HOSTED and self._host is None:
            return ToolOutcome(error="tools cannot run in this conversation"), None
        if tool.kind == "end_call":
            return None, AgentEndCall(reason="agent_ended")
        if tool.kind == "transfer_call":
            target = tool.config.get("target") or call.arguments.get("target")
            if not target or (
                not tool.config.get("target") and target not in (tool.config.get("destinations") or [])
            ):
                return ToolOutcome(error="no transfer destination is configured for that target"), None
            return None, AgentTransfer(target=str(target))
        if tool.kind == "wait":
            return ToolOutcome(result={"ok": True, "note": "stay quiet until the caller speaks"}), None
        return None, None

    def _record(self, call: ToolCall, tool: ToolDefinition | None, outcome: ToolOutcome) -> ToolRecord:
        return instant_record(
            at=self._host.now() if self._host is not None else utcnow(),
            tool_call_id=call.id,
            name=call.name,
            kind=tool.kind if tool is not None else "unknown",
            arguments=call.arguments if call.error is None else call.raw_arguments,
            outcome=outcome,
        )

    async def _execute(self, tool: ToolDefinition, call: ToolCall) -> ToolRecord:
        assert self._host is not None
        return await run_recorded(self._host, tool, tool_call_id=call.id, arguments=call.arguments)

    def _record_later(self, entry: asyncio.Task[ToolRecord] | ToolRecord) -> None:
        host = self._host
        if host is None:
            return

        def done(task: asyncio.Task[ToolRecord]) -> None:
            if not task.cancelled() and task.exception() is None:
                host.record_tool(dataclasses.replace(task.result(), interrupted=True))

        if isinstance(entry, asyncio.Task):
            entry.add_done_callback(done)
        else:
            host.record_tool(dataclasses.replace(entry, interrupted=True))

    def _settle(self) -> None:
        """Answer the tool calls of an interrupted answer, so the model sees what they did."""
        for call, entry in self._unanswered:
            if isinstance(entry, asyncio.Task):
                if entry.done() and not entry.cancelled() and entry.exception() is None:
                    content = entry.result().outcome.for_llm()
                else:
                    content = ToolOutcome(
                        error="the caller interrupted before the result came back; the action may still "
                        "have been carried out"
                    ).for_llm()
            else:
                content = entry.outcome.for_llm()
            self.history.append(
                ChatMessage(role="tool", content=content, tool_call_id=call.id, name=call.name)
            )
        self._unanswered = []

    def on_interrupted(self, spoken_text: str) -> None:
        """Cut this answer's assistant messages down to what was heard; tool calls and results stay
        (they happened, whatever was said about them)."""
        remaining = _norm(spoken_text)
        kept: list[ChatMessage] = []
        for message in self.history[self._reply_start :]:
            if message.role != "assistant":
                kept.append(message)
                continue
            content = _norm(message.content)
            if content and remaining.startswith(content):
                remaining = remaining[len(content) :].strip()
                kept.append(message)
                continue
            if message.tool_calls or remaining:
                kept.append(dataclasses.replace(message, content=remaining))
            remaining = ""
        self.history[self._reply_start :] = kept

    def take_back(self) -> bool:
        """Remove the last caller message and what was said to it, unless the answer called a tool (that
        happened, whatever is said next)."""
        asked, self._asked = self._asked, None
        at = next((i for i in range(len(self.history) - 1, -1, -1) if self.history[i] is asked), None)
        if asked is None or at is None:
            return False
        if any(m.role != "assistant" or m.tool_calls for m in self.history[at + 1 :]):
            return False
        del self.history[at:]
        self.drop_prepared()
        return True

    async def aclose(self) -> None:
        self.drop_prepared()
        running = list(self._running)
        for task in running:
            task.cancel()
        for task in running:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def _trim(self) -> None:
        self.history[:] = _trimmed(self.history, self._max_messages)
