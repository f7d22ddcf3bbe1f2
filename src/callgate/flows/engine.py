"""Run a :class:`~callgate.flows.schema.Flow` as the agent's brain (no LLM).

Each caller turn is handled synchronously (string matching is microseconds), producing at most:
one :class:`AgentData` (the call's collected data, when it changed), one :class:`AgentText` (what
to say, all prompts of the turn joined), then :class:`AgentEndCall` or :class:`AgentTransfer`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from callgate.flows.matching import match_intent
from callgate.flows.schema import Flow, State
from callgate.flows.slots import SlotValue, parse_slot
from callgate.flows.text import normalize, render
from callgate.pipeline.interfaces import (
    AgentData,
    AgentEndCall,
    AgentEngine,
    AgentEvent,
    AgentText,
    AgentTransfer,
)

__all__ = ["FlowAgent"]

log = logging.getLogger(__name__)

_MAX_HOPS = 32  # auto-advancing states per turn; the schema forbids loops, this is a backstop


@dataclass
class _Turn:
    texts: list[str] = field(default_factory=list)
    data_changed: bool = False
    final: AgentEndCall | AgentTransfer | None = None
    hops: int = 0


class FlowAgent(AgentEngine):
    """One call's run through ``flow``.

    ``variables`` override the flow's defaults for ``{{name}}`` placeholders. ``today`` gives the
    date relative days ("tomorrow") count from, in the caller's time zone.
    """

    def __init__(
        self,
        flow: Flow,
        *,
        variables: Mapping[str, Any] | None = None,
        today: Callable[[], date] = date.today,
    ) -> None:
        self._flow = flow
        self._variables = {**flow.variables, **{k: str(v) for k, v in (variables or {}).items()}}
        self._today = today
        self._state_name = flow.start
        self._slots: dict[str, SlotValue] = {}
        self._data: dict[str, Any] = {}
        self._asked: str | None = None
        self._retries = 0
        self._started = False
        self._finished = False

    @property
    def state(self) -> str:
        return self._state_name

    @property
    def data(self) -> dict[str, Any]:
        """Slots and ``set`` values collected so far (as stored on the call)."""
        return dict(self._data)

    @property
    def finished(self) -> bool:
        return self._finished

    # ------------------------------------------------------------------ AgentEngine

    async def greet(self) -> AsyncIterator[AgentEvent]:
        for event in self.greet_now():
            yield event

    async def respond(self, user_text: str) -> AsyncIterator[AgentEvent]:
        for event in self.respond_now(user_text):
            yield event

    def greet_now(self) -> list[AgentEvent]:
        """:meth:`greet`, synchronously."""
        if self._started:
            return []
        turn = _Turn()
        self._started = True
        self._enter(self._flow.start, turn, utterance=None)
        return self._events(turn)

    def respond_now(self, user_text: str) -> list[AgentEvent]:
        """:meth:`respond`, synchronously."""
        if not self._started:
            self.greet_now()  # the caller spoke first: start silently, then answer
        if self._finished:
            return []
        turn = _Turn()
        text = normalize(user_text)
        state = self._flow.states[self._state_name]
        intent = match_intent(state.intents, text) or match_intent(self._flow.intents, text)
        if intent is not None:
            log.debug("flow %s: intent %s -> %s", self._state_name, intent.name, intent.goto)
            self._enter(intent.goto, turn, utterance=(text, user_text))
        elif state.collect and self._fill(state, text, user_text, turn):
            self._retries = 0
            self._after_fill(state, turn)
        else:
            self._miss(state, turn)
        return self._events(turn)

    def expected_answer(self, text: str) -> bool:
        """True if ``text`` answers the current step: fills a slot it still waits for ("tomorrow", "at
        three pm") or matches one of its own intents ("yes" to a confirmation). The caller's turn may then
        end at the first short pause."""
        if not self._started or self._finished:
            return False
        state = self._flow.states[self._state_name]
        words, today = normalize(text), self._today()
        if state.intents and match_intent(state.intents, words) is not None:
            return True
        missing = [s for s in state.collect if s not in self._slots]
        return any(
            parse_slot(self._flow.slots[s].type, words, original=text, today=today, asked=s == self._asked)
            is not None
            for s in missing
        )

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
            value = parse_slot(spec.type, text, original=original, today=today, asked=slot == self._asked)
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

    # ------------------------------------------------------------------ helpers

    def _values(self) -> dict[str, str]:
        return {**self._variables, **{name: value.spoken for name, value in self._slots.items()}}

    def _say(self, template: str, turn: _Turn) -> None:
        text = render(template, self._values())
        if text:
            turn.texts.append(text)

    def _store(self, key: str, value: Any, turn: _Turn) -> None:
        if self._data.get(key, object()) != value:
            self._data[key] = value
            turn.data_changed = True

    def _events(self, turn: _Turn) -> list[AgentEvent]:
        events: list[AgentEvent] = []
        if turn.data_changed:
            events.append(AgentData(dict(self._data)))
        if turn.texts:
            events.append(AgentText(" ".join(turn.texts)))
        if turn.final is not None:
            events.append(turn.final)
        return events
