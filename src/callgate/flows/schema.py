"""The shape of a scripted conversation (a *flow*), validated with Pydantic.

A flow is a set of named states. Entering a state speaks its ``say`` prompt; then the state either
moves on by itself (``next`` and nothing to match), ends the call (``end``), hands over to a human
(``transfer``), or waits for the caller. While waiting, the caller's words are matched against the
state's intents, then the flow's global intents, then the slots the state collects (a state that is
entered by an intent also fills its slots from the words that triggered it; its slots are cleared
on entry). Once every slot is filled the state goes to ``next``. Nothing matched → a re-prompt; after
``max_retries`` misses the flow goes to the state's (or the flow's) ``fallback``.

A state may also call one of the agent's ``http`` tools (``tool``): its arguments are built from
variables, slots and earlier results, fields of its JSON answer are stored (``store``) in the call's
data and as ``{{names}}``, and the flow goes on to ``next`` on success or ``on_error`` on a failure.

``{{name}}`` in any prompt is replaced by a variable (flow defaults overridden by the agent's call
variables), a collected slot, rendered the way it reads aloud ("tomorrow", "three p.m."), or a stored
tool result.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from callgate.errors import ValidationFailed

__all__ = [
    "Flow", "Intent", "SlotSpec", "SlotType", "State", "ToolStep", "placeholders", "validate_flow",
]  # fmt: skip

_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
_IDENTIFIER = r"^[A-Za-z_][A-Za-z0-9_]*$"
_ANSWER_PATH = re.compile(r"^[A-Za-z0-9_$-]+(\.[A-Za-z0-9_$-]+)*$")
Name = str


def placeholders(text: str) -> set[str]:
    """Names used as ``{{name}}`` in ``text``."""
    return set(_PLACEHOLDER.findall(text))


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class SlotType(StrEnum):
    DATE = "date"
    """today / tomorrow / weekday names / "the 5th" / "March 3rd"; stored as an ISO date."""
    TIME = "time"
    """"three pm", "3:30", "half past two", "noon"; stored as ``HH:MM``."""
    NAME = "name"
    """"my name is Ann Lee" / "it's Ann"; stored as the capitalised name."""
    YES_NO = "yes_no"
    """Stored as ``true``/``false``."""
    NUMBER = "number"
    """"two", "12"; stored as an integer."""
    TEXT = "text"
    """Anything the caller says, verbatim."""


class SlotSpec(_Model):
    type: SlotType
    prompt: str = Field(min_length=1, description="Question asked while the slot is missing.")
    reprompt: str | None = Field(default=None, description="Said after a miss; default: the flow's.")


class Intent(_Model):
    name: Name = Field(min_length=1)
    keywords: list[str] = Field(default_factory=list, description="Phrases; fuzzy, word-order kept.")
    answer: Literal["yes", "no"] | None = Field(
        default=None, description="Match an affirmative or negative answer instead of keywords."
    )
    goto: Name

    @model_validator(mode="after")
    def _has_matcher(self) -> Intent:
        if not self.keywords and self.answer is None:
            raise ValueError(f"intent {self.name!r} needs keywords or an answer (yes/no)")
        if any(not k.strip() for k in self.keywords):
            raise ValueError(f"intent {self.name!r} has an empty keyword")
        return self


class ToolStep(_Model):
    """A call of one of the agent's ``http`` tools from a flow state."""

    name: Name = Field(min_length=1, description="The name of one of the agent's `http` tools.")
    arguments: dict[str, Any] = Field(
        default_factory=dict,
        description="The tool's arguments. Strings may use {{placeholders}} (variables, slots as stored: "
        '"2026-11-23", "15:00"; earlier results); a string that is just "{{name}}" passes the value '
        "itself (a number stays a number).",
    )
    store: dict[Annotated[str, StringConstraints(pattern=_IDENTIFIER)], str] = Field(
        default_factory=dict,
        description='Names to store, each from a dotted path in the JSON answer ("status", '
        '"delivery.eta", "slots.0.start"): kept in the call\'s data and usable as {{name}}.',
    )

    @field_validator("store")
    @classmethod
    def _paths(cls, value: dict[str, str]) -> dict[str, str]:
        for name, path in value.items():
            if not _ANSWER_PATH.match(path):
                raise ValueError(f"store.{name}: {path!r} is not a dotted path into the answer")
        return value

    def texts(self) -> Iterator[tuple[str, str]]:
        """(where, text) for every argument string (they may hold placeholders)."""

        def walk(where: str, value: Any) -> Iterator[tuple[str, str]]:
            if isinstance(value, str):
                yield where, value
            elif isinstance(value, dict):
                for key, item in value.items():
                    yield from walk(f"{where}.{key}", item)
            elif isinstance(value, list):
                for i, item in enumerate(value):
                    yield from walk(f"{where}.{i}", item)

        yield from walk("arguments", self.arguments)


class State(_Model):
    say: str = ""
    intents: list[Intent] = Field(default_factory=list)
    collect: list[Name] = Field(default_factory=list, description="Slots asked for, in order.")
    set: dict[Name, str | int | float | bool] = Field(
        default_factory=dict, description="Fixed values stored in the call's data on entry."
    )
    next: Name | None = Field(default=None, description="Where to go (after all slots are filled).")
    end: bool = False
    transfer: str | None = Field(
        default=None, min_length=1, description="Transfer target (number/URI); may use {{variables}}."
    )
    tool: ToolStep | None = Field(
        default=None, description="Call an http tool on entry, then go to `next` (or `on_error`)."
    )
    on_error: Name | None = Field(
        default=None, description="Where a tool state goes when its call fails or a stored field is missing."
    )
    reprompt: str | None = None
    max_retries: int = Field(default=2, ge=0, le=10)
    fallback: Name | None = None

    @property
    def terminal(self) -> bool:
        return self.end or self.transfer is not None

    @property
    def waits(self) -> bool:
        """True if the state listens to the caller (its intents, the flow's, its slots)."""
        return (
            not self.terminal
            and self.tool is None
            and (bool(self.intents or self.collect) or self.next is None)
        )

    def advances(self) -> Iterator[Name]:
        """The states this one goes on to by itself, with no caller turn between."""
        if self.waits or self.terminal:
            return
        if self.next is not None:
            yield self.next
        if self.on_error is not None:
            yield self.on_error

    @model_validator(mode="after")
    def _one_exit(self) -> State:
        if self.end and self.transfer is not None:
            raise ValueError("a state cannot both end the call and transfer it")
        if self.tool is not None:
            if self.terminal or self.intents or self.collect:
                raise ValueError("a tool state cannot have intents, collect, end or transfer")
            if self.next is None or self.on_error is None:
                raise ValueError("a tool state needs `next` (on success) and `on_error`")
        elif self.on_error is not None:
            raise ValueError("`on_error` needs a `tool`")
        if self.terminal and (self.intents or self.collect or self.next is not None):
            raise ValueError("an end/transfer state cannot have intents, collect or next")
        if self.intents and not self.collect and self.next is not None:
            raise ValueError("'next' needs 'collect' when the state has intents (when would it apply?)")
        if self.collect and self.next is None:
            raise ValueError("a state that collects slots needs 'next'")
        if len(set(self.collect)) != len(self.collect):
            raise ValueError("'collect' lists a slot twice")
        return self


class Flow(_Model):
    """A scripted conversation. Build one with :func:`validate_flow`."""

    name: str = ""
    start: Name
    variables: dict[Name, str] = Field(default_factory=dict, description="Defaults for {{variables}}.")
    slots: dict[Name, SlotSpec] = Field(default_factory=dict)
    intents: list[Intent] = Field(default_factory=list, description="Matched in every waiting state.")
    states: dict[Name, State] = Field(min_length=1)
    reprompt: str = "Sorry, I didn't catch that."
    fallback: Name | None = Field(default=None, description="Where to go after too many misses.")

    def targets(self, state: State) -> Iterator[tuple[str, Name]]:
        """(where, target) for every transition out of ``state``, global intents included."""
        if state.next is not None:
            yield "next", state.next
        if state.on_error is not None:
            yield "on_error", state.on_error
        if state.fallback is not None:
            yield "fallback", state.fallback
        for intent in state.intents:
            yield f"intent {intent.name!r}", intent.goto
        if state.waits:
            for intent in self.intents:
                yield f"global intent {intent.name!r}", intent.goto
            if state.fallback is None and self.fallback is not None:
                yield "flow fallback", self.fallback

    def texts(self) -> Iterator[tuple[str, str]]:
        """(where, text) for every prompt that may hold placeholders."""
        yield "reprompt", self.reprompt
        for name, slot in self.slots.items():
            yield f"slots.{name}.prompt", slot.prompt
            if slot.reprompt:
                yield f"slots.{name}.reprompt", slot.reprompt
        for name, state in self.states.items():
            yield f"states.{name}.say", state.say
            if state.reprompt:
                yield f"states.{name}.reprompt", state.reprompt
            if state.transfer:
                yield f"states.{name}.transfer", state.transfer
            if state.tool is not None:
                for where, text in state.tool.texts():
                    yield f"states.{name}.tool.{where}", text

    def stored(self) -> set[Name]:
        """Names that tool states store from their answers."""
        return {key for state in self.states.values() if state.tool for key in state.tool.store}

    @model_validator(mode="after")
    def _consistent(self) -> Flow:
        problems: list[str] = []
        if self.start not in self.states:
            problems.append(f"start state {self.start!r} does not exist")
        if self.fallback is not None and self.fallback not in self.states:
            problems.append(f"fallback state {self.fallback!r} does not exist")
        clash = set(self.variables) & set(self.slots)
        if clash:
            problems.append(f"names used both as variable and slot: {sorted(clash)}")
        clash = self.stored() & (set(self.variables) | set(self.slots))
        if clash:
            problems.append(f"tool results stored under a variable's or slot's name: {sorted(clash)}")
        for name, state in self.states.items():
            if state.waits and not (state.intents or state.collect or self.intents):
                problems.append(f"state {name!r} waits for the caller but has no intents or slots to match")
            for where, target in self.targets(state):
                if target not in self.states:
                    problems.append(f"state {name!r}: {where} goes to unknown state {target!r}")
            for slot in state.collect:
                if slot not in self.slots:
                    problems.append(f"state {name!r} collects unknown slot {slot!r}")
        if problems:
            raise ValueError("; ".join(problems))
        if loop := self._auto_loop():
            raise ValueError(f"states {loop} go to each other with no caller turn between them")
        unreachable = sorted(set(self.states) - self._reachable())
        if unreachable:
            raise ValueError(f"states not reachable from {self.start!r}: {unreachable}")
        return self

    def _auto_loop(self) -> list[Name]:
        """States passed through without waiting that come back round to each other, if any (a tool
        state goes on two ways: both are followed; each state is explored once)."""
        path: list[Name] = []
        done: set[Name] = set()

        def visit(current: Name) -> bool:
            if current in path:
                del path[: path.index(current)]
                return True
            if current in done:
                return False
            path.append(current)
            if any(visit(after) for after in self.states[current].advances()):
                return True
            path.pop()
            done.add(current)
            return False

        return path if any(visit(name) for name in self.states) else []

    def _reachable(self) -> set[Name]:
        seen: set[Name] = set()
        todo = [self.start]
        while todo:
            name = todo.pop()
            if name in seen:
                continue
            seen.add(name)
            todo.extend(target for _, target in self.targets(self.states[name]))
        return seen

    def check_placeholders(self, known_variables: Iterable[str] = ()) -> list[str]:
        """Problems with ``{{names}}`` that are neither variables, slots nor stored results."""
        known = set(self.variables) | set(self.slots) | self.stored() | set(known_variables)
        return [
            f"{where}: unknown placeholder {{{{{name}}}}}"
            for where, text in self.texts()
            for name in sorted(placeholders(text) - known)
        ]


def validate_flow(
    data: dict[str, Any],
    *,
    known_variables: Iterable[str] = (),
    tools: Mapping[str, str] | None = None,
) -> Flow:
    """Parse and check a flow definition.

    ``known_variables`` are variables the agent defines outside the flow (they may be used as
    ``{{name}}`` without a default in ``flow.variables``). ``tools`` maps the agent's tool names to
    their kinds: a tool state must name one of its ``http`` tools (None: not checked). Raises
    :class:`~callgate.errors.ValidationFailed` whose ``errors`` list has ``loc``/``msg``/``type``
    entries like FastAPI's.
    """
    try:
        flow = Flow.model_validate(data)
    except ValidationError as exc:
        located = [
            {"loc": ["flow", *e["loc"]], "msg": e["msg"], "type": e["type"]}
            for e in exc.errors(include_url=False, include_context=False, include_input=False)
        ]
        raise ValidationFailed("The flow is not valid", errors=located) from exc
    errors: list[dict[str, Any]] = [
        {"loc": ["flow"], "msg": p, "type": "value_error"} for p in flow.check_placeholders(known_variables)
    ]
    for name, state in flow.states.items():
        if tools is None or state.tool is None or tools.get(state.tool.name) == "http":
            continue
        why = "is not an http tool" if state.tool.name in tools else "is not one of the agent's tools"
        errors.append(
            {
                "loc": ["flow", "states", name, "tool", "name"],
                "msg": f"{state.tool.name!r} {why}",
                "type": "value_error",
            }
        )
    if errors:
        raise ValidationFailed("The flow is not valid", errors=errors)
    return flow
