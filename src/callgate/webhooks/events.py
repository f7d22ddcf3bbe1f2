"""The event catalogue and the Standard Webhooks envelope ``{"type", "timestamp", "data"}``.

``data`` is the call exactly as ``GET /v1/calls/{id}`` returns it, taken when the event happens (so a
late delivery of ``call.started`` still shows the call as it was then), or for ``transcript.*`` the turn
with its ``call_id``. The API layer installs the call renderer (:func:`set_call_renderer`) so that the
webhook and the API can never disagree; without one (domain-only use, tests) a short summary is sent.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from callgate.store.models import Call, TranscriptTurn

__all__ = [
    "DEFAULT_EVENTS",
    "OPT_IN",
    "EventType",
    "envelope",
    "new_id",
    "render_call",
    "set_call_renderer",
    "turn_data",
]


class EventType(StrEnum):
    CALL_CREATED = "call.created"
    CALL_STARTED = "call.started"
    CALL_ENDED = "call.ended"
    CALL_FAILED = "call.failed"
    CALL_ANALYZED = "call.analyzed"
    CALL_RECORDING_AVAILABLE = "call.recording.available"
    CALL_PROVIDER_SWITCHED = "call.provider_switched"
    TRANSCRIPT_FINAL = "transcript.final"
    TRANSCRIPT_PARTIAL = "transcript.partial"
    CALL_TOOL_CALLED = "call.tool_called"

    @property
    def description(self) -> str:
        return _DESCRIPTIONS[self]


_DESCRIPTIONS = {
    EventType.CALL_CREATED: "A call was created; the caller has not joined yet.",
    EventType.CALL_STARTED: "The caller joined and the conversation began.",
    EventType.CALL_ENDED: "The call ended normally (`end_reason` says why); `data.transcript` is complete.",
    EventType.CALL_FAILED: "The call failed (never joined, server error, capacity).",
    EventType.CALL_ANALYZED: "Post-call analysis is ready in `data.analysis`.",
    EventType.CALL_RECORDING_AVAILABLE: "The recording can be fetched from `data.recording_url`.",
    EventType.CALL_PROVIDER_SWITCHED: (
        "A stage (stt, tts, llm) of a live call moved to its next engine: `data.role`, `data.from`, "
        "`data.to`, `data.reason`, `data.at_start`."
    ),
    EventType.TRANSCRIPT_FINAL: "One finished transcript turn (caller or agent), with its latency.",
    EventType.TRANSCRIPT_PARTIAL: "An interim transcript (opt-in: only sent to endpoints that list it).",
    EventType.CALL_TOOL_CALLED: "The agent called a tool: the transcript entry (role `tool`) with the "
    "tool's name, arguments, result or error and latency.",
}

OPT_IN = frozenset({EventType.TRANSCRIPT_PARTIAL})
"""Types sent only to destinations that ask for them by name."""
DEFAULT_EVENTS = tuple(t for t in EventType if t not in OPT_IN)

_ID_PREFIX = {"endpoint": "whep", "event": "msg", "delivery": "whd"}


def new_id(kind: str) -> str:
    """``whep_…`` (endpoint), ``msg_…`` (event, the ``webhook-id``), ``whd_…`` (delivery)."""
    return f"{_ID_PREFIX[kind]}_{secrets.token_hex(16)}"


def envelope(type_: EventType | str, *, timestamp: datetime, data: dict[str, Any]) -> dict[str, Any]:
    """The Standard Webhooks payload."""
    return {"type": str(type_), "timestamp": timestamp.isoformat().replace("+00:00", "Z"), "data": data}


CallRenderer = Callable[[AsyncSession, Call], Awaitable[dict[str, Any]]]


async def _summary(_: AsyncSession, call: Call) -> dict[str, Any]:
    return {
        "id": call.id,
        "agent_id": call.agent_id,
        "status": call.status,
        "end_reason": call.end_reason,
        "metadata": call.call_metadata,
        "data": call.data,
        "analysis": call.analysis,
    }


NewCallRenderer = Callable[[Call], "dict[str, Any] | None"]

_renderer: CallRenderer = _summary
_new_call_renderer: NewCallRenderer | None = None


def set_call_renderer(renderer: CallRenderer | None, *, new_call: NewCallRenderer | None = None) -> None:
    """Install the function that renders a call for ``data`` (the app installs the API's view).

    ``new_call`` renders a call that was just created (so has nothing else stored yet, e.g. no
    transcript) from the object alone, without reading the database; it returns None when it cannot,
    and ``renderer`` is used instead. It must give what ``renderer`` would.
    """
    global _renderer, _new_call_renderer
    _renderer = renderer or _summary
    _new_call_renderer = new_call if renderer is not None else None


async def render_call(session: AsyncSession, call: Call, *, new: bool = False) -> dict[str, Any]:
    """``new``: ``call`` was created in this transaction (see :func:`set_call_renderer`)."""
    if new and _new_call_renderer is not None:
        data = _new_call_renderer(call)
        if data is not None:
            return data
    return await _renderer(session, call)


def turn_data(turn: TranscriptTurn) -> dict[str, Any]:
    """A transcript turn as the API shows it, with its ``call_id``."""
    return {
        "call_id": turn.call_id,
        "seq": turn.seq,
        "role": turn.role,
        "text": turn.text,
        "interrupted": turn.interrupted,
        "started_at": turn.started_at.isoformat().replace("+00:00", "Z"),
        "ended_at": turn.ended_at.isoformat().replace("+00:00", "Z"),
        "endpointing_ms": turn.endpointing_ms,
        "stt_ms": turn.stt_ms,
        "agent_first_token_ms": turn.agent_first_token_ms,
        "tts_first_audio_ms": turn.tts_first_audio_ms,
        "total_ms": turn.total_ms,
        "tool": turn.tool,
        "barge_ins": turn.barge_ins or [],
    }
