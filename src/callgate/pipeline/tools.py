"""Agent tools as a live call sees them: definitions, outcomes, records, and the host that runs them.

An agent's ``tools`` (stored on the agent, validated by the API) arrive here as :class:`ToolDefinition`
values. The agent brain (``flows/prompt.py``, ``flows/engine.py``) decides *when* a tool runs; a
:class:`ToolHost` (the call's session) runs the kinds that need the outside world — ``http`` (through
the domain's signed, guarded executor), ``client`` (the browser, over RTVI) and ``send_dtmf`` (the phone
transport) — and records every call in the transcript. A failure is never an exception to the brain:
it is a :class:`ToolOutcome` with an ``error`` the LLM is told about, so a tool cannot end a call.
"""

from __future__ import annotations

import asyncio
import json
import logging
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

__all__ = [
    "BUILT_IN",
    "MAX_RECORDED_CHARS",
    "ToolDefinition",
    "ToolHost",
    "ToolKind",
    "ToolOutcome",
    "ToolRecord",
    "definitions",
    "instant_record",
    "run_recorded",
    "shorten",
]

log = logging.getLogger(__name__)

ToolKind = Literal["http", "client", "end_call", "transfer_call", "send_dtmf", "wait"]
BUILT_IN: frozenset[str] = frozenset({"end_call", "transfer_call", "send_dtmf", "wait"})
"""Kinds whose name is their kind: at most one of each per agent."""
MAX_RECORDED_CHARS = 16_000
"""Arguments and results longer than this (as JSON) are cut in the transcript (not for the LLM)."""


@dataclass(frozen=True, slots=True)
class ToolDefinition:
    """One tool of an agent. ``config`` holds what only its kind uses: ``url``, ``method``,
    ``headers`` (values still sealed) for ``http``; ``target``/``destinations`` for ``transfer_call``."""

    kind: ToolKind
    name: str
    description: str
    parameters: dict[str, Any] = field(default_factory=dict)
    message: str | None = None
    """Said while the tool runs ("One moment while I check that.")."""
    timeout_ms: int = 10_000
    config: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ToolOutcome:
    """What a tool gave back: a JSON-able ``result``, or an ``error`` for the LLM (never both)."""

    result: Any = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def for_llm(self) -> str:
        """The tool message's content: the result as JSON, or ``{"error": ...}``."""
        body = {"error": self.error} if self.error is not None else self.result
        return json.dumps(body, ensure_ascii=False, default=str)


@dataclass(frozen=True, slots=True)
class ToolRecord:
    """One finished tool call, as the transcript keeps it (role ``tool``)."""

    tool_call_id: str
    name: str
    kind: str
    arguments: Any
    outcome: ToolOutcome
    started_at: datetime
    ended_at: datetime
    latency_ms: int
    interrupted: bool = False
    """The caller barged in before the result was spoken: the tool still ran (its side effect
    stands), only what the agent would have said about it was dropped."""

    def entry(self) -> dict[str, Any]:
        """The JSON kept on the transcript turn and sent in webhooks."""
        return {
            "tool_call_id": self.tool_call_id,
            "name": self.name,
            "kind": self.kind,
            "arguments": shorten(self.arguments),
            "result": shorten(self.outcome.result) if self.outcome.ok else None,
            "error": self.outcome.error,
            "latency_ms": self.latency_ms,
        }


def shorten(value: Any) -> Any:
    """``value`` if its JSON fits :data:`MAX_RECORDED_CHARS`, else its JSON text cut to fit."""
    text = json.dumps(value, ensure_ascii=False, default=str)
    if len(text) <= MAX_RECORDED_CHARS:
        return value
    return text[:MAX_RECORDED_CHARS] + "…"


def definitions(stored: Sequence[Mapping[str, Any]]) -> tuple[ToolDefinition, ...]:
    """An agent's stored ``tools`` (already validated) as definitions."""
    out: list[ToolDefinition] = []
    for raw in stored:
        kind = raw["type"]
        common = {"type", "name", "description", "parameters", "message", "timeout_ms"}
        out.append(
            ToolDefinition(
                kind=kind,
                name=str(raw.get("name") or kind),
                description=str(raw.get("description") or ""),
                parameters=dict(raw.get("parameters") or {}),
                message=raw.get("message"),
                timeout_ms=int(raw.get("timeout_ms") or 10_000),
                config={k: v for k, v in raw.items() if k not in common},
            )
        )
    return tuple(out)


class ToolHost(ABC):
    """What runs an agent's tools for one call and records them (the call's session)."""

    @abstractmethod
    async def run_tool(
        self, tool: ToolDefinition, *, tool_call_id: str, arguments: dict[str, Any]
    ) -> ToolOutcome:
        """Run an ``http``, ``client`` or ``send_dtmf`` tool. Never raises for a failed tool: the
        failure is the outcome's ``error``. Cancelling it abandons the wait, not a request already sent."""

    @abstractmethod
    def record_tool(self, record: ToolRecord) -> None:
        """Keep ``record`` in the call's transcript (and its webhooks), in the order of calls."""

    @abstractmethod
    def now(self) -> datetime: ...

    @abstractmethod
    def monotonic(self) -> float: ...


def instant_record(
    *, at: datetime, tool_call_id: str, name: str, kind: str, arguments: Any, outcome: ToolOutcome
) -> ToolRecord:
    """The record of a tool call decided without running anything (an error, a built-in's action)."""
    return ToolRecord(
        tool_call_id=tool_call_id,
        name=name,
        kind=kind,
        arguments=arguments,
        outcome=outcome,
        started_at=at,
        ended_at=at,
        latency_ms=0,
    )


async def run_recorded(
    host: ToolHost, tool: ToolDefinition, *, tool_call_id: str, arguments: dict[str, Any]
) -> ToolRecord:
    """Run ``tool`` on ``host``, timed, as a record (not yet kept: the caller decides when and whether
    it was interrupted). A host that raises gives an error outcome, not an exception."""
    started_at, t0 = host.now(), host.monotonic()
    try:
        outcome = await host.run_tool(tool, tool_call_id=tool_call_id, arguments=arguments)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # a host bug must not end the call: the agent hears of a failure
        log.exception("tool %s failed", tool.name)
        outcome = ToolOutcome(error=f"the tool failed: {type(exc).__name__}")
    return ToolRecord(
        tool_call_id=tool_call_id,
        name=tool.name,
        kind=tool.kind,
        arguments=arguments,
        outcome=outcome,
        started_at=started_at,
        ended_at=host.now(),
        latency_ms=round((host.monotonic() - t0) * 1000),
    )
