"""Run a :class:`~callgate.flows.schema.Flow` as the agent's brain (no LLM).

Each caller turn is handled synchronously (string matching is microseconds), producing at most:
one :class:`AgentData` (the call's collected data, when it changed), one :class:`AgentText` (what
to say, all prompts of the turn joined), then :class:`AgentEndCall` or :class:`AgentTransfer`.

A turn that reaches a tool state stops there: what it has to say so far goes out (so it is spoken
while the request runs), the agent's ``http`` tool runs on the call's
:class:`~callgate.pipeline.tools.ToolHost`, fields of its answer are stored, and the turn goes on at
the state's ``next`` (or ``on_error``). A caller who barges in abandons what was to be said, not the
request: its result is applied when the caller's next turn comes, and that turn's words are matched
in the state it led to.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import re
import secrets
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from callgate.clock import utcnow as _utcnow
from callgate.flows.matching import match_intent
from callgate.flows.schema import Flow, Intent, SlotType, State
from callgate.flows.slots import SlotValue, parse_slot
from callgate.flows.text import normalize, render
from callgate.flows.tool_args import argument_error
from callgate.pipeline.interfaces import (
    AgentData,
    AgentEndCall,
    AgentEngine,
    AgentEvent,
    AgentText,
    AgentTransfer,
)
from callgate.pipeline.tools import (
    ToolDefinition,
    ToolHost,
    ToolOutcome,
    ToolRecord,
    instant_record,
    run_recorded,
)

__all__ = ["FlowAgent"]

log = logging.getLogger(__name__)

_MAX_HOPS = 32  # auto-advancing states per turn; the schema forbids loops, this is a backstop
_WHOLE_PLACEHOLDER = re.compile(r"^\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}$")
_MISSING = object()


@dataclass
class _Turn:
    texts: list[str] = field(default_factory=list)
    data_changed: bool = False
    final: AgentEndCall | AgentTransfer | None = None
    hops: int = 0
    tool: str | None = None
    """The tool state the turn stopped at: its request runs before the turn goes on."""


@dataclass(frozen=True)
class _Position:
    """Where a flow stands between two turns (see :meth:`FlowAgent.take_back`)."""

    state: str
    slots: dict[str, SlotValue]
    results: dict[str, Any]
    data: dict[str, Any]
    asked: str | None
    retries: int
    finished: bool


@dataclass
class _Pending:
    """A tool state's request, running or done, whose result the flow has not applied yet."""

    state: str
    task: asyncio.Task[ToolRecord]


class FlowAgent(AgentEngine):
    """One call's run through ``flow``.

    ``variables`` override the flow's defaults for ``{{name}}`` placeholders. ``today`` gives the
    date relative days ("tomorrow") count from, in the caller's time zone. ``tools`` are the agent's
    (:func:`callgate.pipeline.tools.definitions`): tool states call its ``http`` tools. ``language`` (the
    agent's, BCP 47) is the one yes/no answers and numbers are heard in (English or Spanish).
    """

    def __init__(
        self,
        flow: Flow,
        *,
        variables: Mapping[str, Any] | None = None,
        today: Callable[[], date] = date.today,
        tools: Sequence[ToolDefinition] = (),
        language: str = "en",
    ) -> None:
        self._flow = flow
        self._language = language
        self._variables = {**flow.variables, **{k: str(v) for k, v in (variables or {}).items()}}
        self._today = today
        self._tools = {t.name: t for t in tools}
        self._host: ToolHost | None = None
        self._state_name = flow.start
        self._slots: dict[str, SlotValue] = {}
        self._results: dict[str, Any] = {}
        self._data: dict[str, Any] = {}
        self._asked: str | None = None
        self._retries = 0
        self._started = False
        self._finished = False
        self._pending: _Pending | None = None
        self._undo: _Position | None = None
        """Where the flow stood before the last :meth:`respond`, while :meth:`take_back` may return there."""
        self._resend_data = False

    @property
    def state(self) -> str:
        return self._state_name

    @property
    def data(self) -> dict[str, Any]:
        """Slots, ``set`` values and stored tool results so far (as stored on the call)."""
        return dict(self._data)

    @property
    def finished(self) -> bool:
        return self._finished

    # ------------------------------------------------------------------ AgentEngine

    def bind(self, host: ToolHost) -> None:
        self._host = host

    async def greet(self) -> AsyncIterator[AgentEvent]:
        if self._started:
            return
        turn = _Turn()
        self._started = True
        self._enter(self._flow.start, turn, utterance=None)
        async for event in self._play(turn):
            yield event

    def respond(self, user_text: str) -> AsyncIterator[AgentEvent]:
        # Only a turn that runs no tool and does not end the call can be taken back (see _respond).
        ready = self._started and not self._finished and self._pending is None
        self._undo = self._position() if ready else None
        return self._respond(user_text)

    def take_back(self) -> bool:
        """Return to the step the last :meth:`respond` started from; the call's data is sent again with
        the next answer if that turn had changed it."""
        undo, self._undo = self._undo, None
        if undo is None:
            return False
        self._resend_data = self._resend_data or undo.data != self._data
        self._restore(undo)
        log.debug("flow: the last turn is taken back, at %s again", self._state_name)
        return True

    async def _respond(self, user_text: str) -> AsyncIterator[AgentEvent]:
        turn = _Turn()
        if not self._started:  # the caller spoke first: start silently, then answer
            self._started = True
            self._enter(self._flow.start, turn, utterance=None)
            async for event in self._play(turn, silent=True):
                yield event
            turn = _Turn()
        quiet = False
        if (pending := self._pending) is not None:  # a barge-in left a tool's result: it comes first
            record = await asyncio.shield(pending.task)  # kept pending if this turn is cut off too
            self._pending = None
            self._apply(pending.state, record.outcome, turn)
            quiet = True  # the caller spoke over "one moment": only words that answer the new step count
        if not self._finished and turn.tool is None:
            self._hear(user_text, turn, quiet=quiet)
        if turn.tool is not None or turn.final is not None:
            self._undo = None  # a request that starts, or the end of the call, cannot be taken back
        async for event in self._play(turn):
            yield event

    def _hear(self, user_text: str, turn: _Turn, *, quiet: bool) -> None:
        text = normalize(user_text)
        state = self._flow.states[self._state_name]
        if not state.waits:
            return
        intent = self._intent(state.intents, text) or self._intent(self._flow.intents, text)
        if intent is not None:
            log.debug("flow %s: intent %s -> %s", self._state_name, intent.name, intent.goto)
            self._enter(intent.goto, turn, utterance=(text, user_text))
        elif state.collect and self._fill(state, text, user_text, turn):
            self._retries = 0
            self._after_fill(state, turn)
        elif not quiet:
            self._miss(state, turn)

    async def _play(self, turn: _Turn, *, silent: bool = False) -> AsyncIterator[AgentEvent]:
        """The turn's events; at each tool state, what it has said so far goes out before the request
        is awaited. ``silent``: the data only (the caller spoke first; the greeting is skipped)."""
        while turn.tool is not None:
            name, turn.tool = turn.tool, None
            pending = self._start_tool(name, turn)
            self._pending = pending
            for event in self._events(turn, more=True):
                if not silent or isinstance(event, AgentData):
                    yield event
            turn = _Turn(hops=turn.hops)
            record = await asyncio.shield(pending.task)  # a barge-in cancels the wait, not the request
            self._pending = None
            if self._host is not None:
                self._host.record_tool(record)
            self._apply(name, record.outcome, turn)
        for event in self._events(turn):
            if not silent or isinstance(event, AgentData):
                yield event

    async def aclose(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await pending.task

    async def remind(self, text: str) -> AsyncIterator[AgentEvent]:
        """The reminder, then what the step asks again (its ``reprompt``, else the reprompt or prompt of
        the slot it asked for), so that the caller knows what to answer: "Are you still there? Which day
        suits you?". A step that asks nothing in particular: the reminder alone. The flow stays where it
        is."""
        turn = _Turn()
        self._say(text, turn)
        if self._started and not self._finished and self._pending is None:
            state = self._flow.states[self._state_name]
            if state.waits and state.reprompt:
                self._say(state.reprompt, turn)
            elif state.waits and self._asked is not None:
                spec = self._flow.slots[self._asked]
                self._say(spec.reprompt or spec.prompt, turn)
        if turn.texts:
            yield AgentText(" ".join(turn.texts))

    def on_interrupted(self, spoken_text: str) -> None:
        """A barge-in: a request still running is recorded (marked interrupted) when it completes."""
        pending, host = self._pending, self._host
        if pending is None or host is None:
            return

        def done(task: asyncio.Task[ToolRecord]) -> None:
            if not task.cancelled() and task.exception() is None:
                host.record_tool(dataclasses.replace(task.result(), interrupted=True))

        pending.task.add_done_callback(done)

    def predict_reply(self, user_text: str) -> str | None:
        """The words :meth:`respond` would say to ``user_text`` now, found by running the step on a copy
        of the flow's position and putting it back; None when the answer waits on a tool's result
        (its request must not start twice) or the flow has not started or has ended."""
        if not self._started or self._finished or self._pending is not None:
            return None
        saved = self._position()
        turn = _Turn()
        try:
            self._hear(user_text, turn, quiet=False)
        except Exception:  # a flow that loops: respond() will say so
            return None
        finally:
            self._restore(saved)
        if turn.tool is not None:  # the tool's message joins the words: left to respond()
            return None
        return " ".join(turn.texts) or None

    def expected_answer(self, text: str) -> bool:
        """True if ``text`` answers the current step: fills a slot it still waits for ("tomorrow", "at
        three pm") or matches one of its own intents ("yes" to a confirmation). The caller's turn may then
        end at the first short pause."""
        if not self._started or self._finished:
            return False
        state = self._flow.states[self._state_name]
        words, today = normalize(text), self._today()
        if state.intents and self._intent(state.intents, words) is not None:
            return True
        missing = [s for s in state.collect if s not in self._slots]
        return any(
            self._parse(self._flow.slots[s].type, words, text, today=today, asked=s == self._asked)
            is not None
            for s in missing
        )

    def _position(self) -> _Position:
        return _Position(
            self._state_name, dict(self._slots), dict(self._results), dict(self._data), self._asked,
            self._retries, self._finished,
        )  # fmt: skip

    def _restore(self, at: _Position) -> None:
        self._state_name, self._slots, self._results = at.state, dict(at.slots), dict(at.results)
        self._data, self._asked, self._retries = dict(at.data), at.asked, at.retries
        self._finished = at.finished

    # ------------------------------------------------------------------ steps

    def _enter(self, name: str, turn: _Turn, *, utterance: tuple[str, str] | None) -> None:
        turn.hops += 1
        if turn.hops > _MAX_HOPS:
            raise RuntimeError(f"flow loops through auto-advancing states at {name!r}")
        log.debug("flow state %s -> %s", self._state_name, name)
        state = self._flow.states[name]
        self._state_name, self._retries, self._asked = name, 0, None
        for key, value in state.set.items():
            self._store(key, value, turn)
        for slot in state.collect:  # (re)entering a form asks afresh
            self._slots.pop(slot, None)
            if slot in self._data:
                self._store(slot, None, turn)
        self._say(state.say, turn)
        if state.end:
            turn.final, self._finished = AgentEndCall(), True
        elif state.transfer is not None:
            turn.final, self._finished = AgentTransfer(render(state.transfer, self._values())), True
        elif state.tool is not None:
            turn.tool = name
        elif state.collect:
            if utterance is not None:
                self._fill(state, *utterance, turn)
            self._after_fill(state, turn)
        elif not state.waits and state.next is not None:
            self._enter(state.next, turn, utterance=None)

    def _fill(self, state: State, text: str, original: str, turn: _Turn) -> bool:
        """Fill missing slots of ``state`` from the caller's words; True if any was filled."""
        filled = False
        today = self._today()
        for slot in [s for s in state.collect if s not in self._slots]:
            spec = self._flow.slots[slot]
            value = self._parse(spec.type, text, original, today=today, asked=slot == self._asked)
            if value is not None:
                self._slots[slot] = value
                self._store(slot, value.value, turn)
                filled = True
        return filled

    def _after_fill(self, state: State, turn: _Turn) -> None:
        missing = [s for s in state.collect if s not in self._slots]
        if not missing:
            assert state.next is not None  # the schema requires it
            self._enter(state.next, turn, utterance=None)
            return
        self._asked = missing[0]
        self._say(self._flow.slots[missing[0]].prompt, turn)

    def _miss(self, state: State, turn: _Turn) -> None:
        self._retries += 1
        fallback = state.fallback or self._flow.fallback
        if self._retries > state.max_retries and fallback is not None:
            log.info("flow %s: %d misses, falling back to %s", self._state_name, self._retries, fallback)
            self._enter(fallback, turn, utterance=None)
            return
        self._say(self._flow.reprompt, turn)
        if state.reprompt:
            self._say(state.reprompt, turn)
        elif self._asked is not None:
            spec = self._flow.slots[self._asked]
            self._say(spec.reprompt or spec.prompt, turn)
        else:
            self._say(state.say, turn)

    # ------------------------------------------------------------------ tool states

    def _start_tool(self, name: str, turn: _Turn) -> _Pending:
        """Start the request of tool state ``name``; its ``message`` joins what the turn says."""
        step = self._flow.states[name].tool
        assert step is not None
        tool = self._tools.get(step.name)
        arguments = {key: self._argument(value) for key, value in step.arguments.items()}
        call_id = f"flow_{secrets.token_hex(8)}"
        if tool is not None and tool.message:
            self._say(tool.message, turn)
        task = asyncio.create_task(self._run(tool, step.name, call_id, arguments), name=f"flow-tool-{name}")
        return _Pending(name, task)

    async def _run(
        self, tool: ToolDefinition | None, name: str, call_id: str, arguments: dict[str, Any]
    ) -> ToolRecord:
        host = self._host
        problem: str | None
        if tool is None or tool.kind != "http":
            problem = f"the agent has no http tool named {name!r}"
        elif host is None:
            problem = "tools cannot run in this conversation"
        else:
            problem = argument_error(tool.parameters, arguments)
        if problem is not None or host is None or tool is None:
            return instant_record(
                at=host.now() if host is not None else _utcnow(),
                tool_call_id=call_id,
                name=name,
                kind=tool.kind if tool is not None else "unknown",
                arguments=arguments,
                outcome=ToolOutcome(error=problem),
            )
        return await run_recorded(host, tool, tool_call_id=call_id, arguments=arguments)

    def _apply(self, name: str, outcome: ToolOutcome, turn: _Turn) -> None:
        """Store what tool state ``name`` asked for of ``outcome`` and go on to its next state."""
        state = self._flow.states[name]
        assert state.tool is not None and state.next is not None and state.on_error is not None
        picked = {key: _pick(outcome.result, path) for key, path in state.tool.store.items()}
        missing = [path for key, path in state.tool.store.items() if picked[key] is _MISSING]
        if not outcome.ok or missing:
            why = outcome.error or f"the answer has no {', '.join(missing)}"
            log.info("flow %s: tool %s failed (%s) -> %s", name, state.tool.name, why, state.on_error)
            self._enter(state.on_error, turn, utterance=None)
            return
        for key, value in picked.items():
            self._results[key] = value
            self._store(key, value, turn)
        self._enter(state.next, turn, utterance=None)

    def _argument(self, value: Any) -> Any:
        """An argument template with the call's values: ``"{{day}}"`` alone is the value itself."""
        if isinstance(value, str):
            raw = self._raw_values()
            if whole := _WHOLE_PLACEHOLDER.match(value.strip()):
                return raw.get(whole.group(1))
            return render(value, {k: _as_text(v) for k, v in raw.items()})
        if isinstance(value, dict):
            return {key: self._argument(item) for key, item in value.items()}
        if isinstance(value, list):
            return [self._argument(item) for item in value]
        return value

    def _raw_values(self) -> dict[str, Any]:
        """Variables, slots as stored (ISO dates, ``HH:MM``), stored results."""
        return {**self._variables, **{k: v.value for k, v in self._slots.items()}, **self._results}

    # ------------------------------------------------------------------ helpers

    def _intent(self, intents: Sequence[Intent], text: str) -> Intent | None:
        return match_intent(intents, text, language=self._language)

    def _parse(
        self, kind: SlotType, text: str, original: str, *, today: date, asked: bool
    ) -> SlotValue | None:
        return parse_slot(kind, text, original=original, today=today, asked=asked, language=self._language)

    def _values(self) -> dict[str, str]:
        spoken = {name: value.spoken for name, value in self._slots.items()}
        return {**self._variables, **{k: _as_text(v) for k, v in self._results.items()}, **spoken}

    def _say(self, template: str, turn: _Turn) -> None:
        text = render(template, self._values())
        if text:
            turn.texts.append(text)

    def _store(self, key: str, value: Any, turn: _Turn) -> None:
        if self._data.get(key, object()) != value:
            self._data[key] = value
            turn.data_changed = True

    def _events(self, turn: _Turn, *, more: bool = False) -> list[AgentEvent]:
        """``more``: the turn goes on after a tool's request, so its last sentence is closed now (a
        trailing space) and spoken while the request runs."""
        events: list[AgentEvent] = []
        if turn.data_changed or self._resend_data:
            self._resend_data = False
            events.append(AgentData(dict(self._data)))
        if turn.texts:
            events.append(AgentText(" ".join(turn.texts) + (" " if more else "")))
        if turn.final is not None:
            events.append(turn.final)
        return events


def _pick(answer: Any, path: str) -> Any:
    """The value at dotted ``path`` in a JSON answer ("delivery.eta", "slots.0"), or :data:`_MISSING`."""
    node = answer
    for part in path.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return _MISSING
    return node


def _as_text(value: Any) -> str:
    """A value as it is read aloud or put into a text template."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if value is None:
        return ""
    if isinstance(value, str | int | float):
        return str(value)
    return json.dumps(value, ensure_ascii=False)
