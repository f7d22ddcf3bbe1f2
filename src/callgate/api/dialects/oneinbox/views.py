"""callgate's calls as the OneInbox dialect shows them: status and end-reason vocabularies, and the call
record ``GET /v1/calls/{call_id}`` answers (OneInbox's ``CallResponse``)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from callgate.auth import livekit
from callgate.domain.calls import percentile
from callgate.domain.lifecycle import CallStatus, EndReason

if TYPE_CHECKING:
    from callgate.store.models import Call, TranscriptTurn
    from callgate.store.models_telephony import PhoneCall

STATUS = {
    CallStatus.CREATED: "queued",
    CallStatus.CONNECTING: "initiated",
    CallStatus.IN_PROGRESS: "in_progress",
    CallStatus.ENDED: "completed",
    CallStatus.FAILED: "failed",
}

END_REASONS = {
    EndReason.CALLER_HANGUP: "user_hangup",
    EndReason.AGENT_ENDED: "agent_hangup",
    EndReason.MAX_DURATION: "max_duration",
    EndReason.SILENCE_TIMEOUT: "silence_timeout",
    EndReason.JOIN_DEADLINE_MISSED: "join_timeout",
    EndReason.TRANSPORT_LOST: "connection_lost",
    EndReason.SERVER_ERROR: "error",
    EndReason.API_REQUEST: "api_stop",
    EndReason.TRANSFERRED: "transferred",
    EndReason.CONCURRENCY_LIMIT: "concurrency_limit",
    EndReason.TELEPHONY_UNAVAILABLE: "telephony_unavailable",
    EndReason.NODE_LOST: "error",
    EndReason.NODE_SHUTDOWN: "server_shutdown",
    EndReason.BUSY: "busy",
    EndReason.NO_ANSWER: "no_answer",
    EndReason.DECLINED: "declined",
    EndReason.CARRIER_ERROR: "carrier_error",
}

ROLES = {"agent": "assistant", "user": "user"}
SPEAKERS = {"agent": "Agent", "user": "User"}


def iso(at: datetime | None) -> str | None:
    return at.isoformat().replace("+00:00", "Z") if at else None


def _stats(values: list[int]) -> dict[str, Any] | None:
    if not values:
        return None
    return {
        "avg_ms": round(sum(values) / len(values)),
        "p50_ms": percentile(values, 50),
        "min_ms": min(values),
        "max_ms": max(values),
        "samples": len(values),
    }


def latency(turns: Sequence[TranscriptTurn]) -> dict[str, Any]:
    """Per-stage latency of the agent's turns, in OneInbox's names."""
    agent = [t for t in turns if t.role == "agent"]
    return {
        "llm_ttft": _stats([t.agent_first_token_ms for t in agent if t.agent_first_token_ms is not None]),
        "tts_ttfb": _stats([t.tts_first_audio_ms for t in agent if t.tts_first_audio_ms is not None]),
        "eou_delay": _stats([t.endpointing_ms for t in agent if t.endpointing_ms is not None]),
    }


def call_response(
    call: Call, *, phone: PhoneCall | None, turns: Sequence[TranscriptTurn], recording_url: str | None
) -> dict[str, Any]:
    turns = [t for t in turns if t.spoken]  # OneInbox's transcript has what speakers said only

    duration = (
        (call.ended_at - call.started_at).total_seconds() if call.ended_at and call.started_at else None
    )
    analysis: dict[str, Any] = getattr(call, "analysis", None) or {}
    reason = EndReason(call.end_reason) if call.end_reason else None
    return {
        "id": call.id,
        "agent_id": call.agent_id,
        "type": "web" if phone is None else phone.direction,
        "status": STATUS[CallStatus(call.status)],
        "from_number": phone.from_number if phone else None,
        "to_number": phone.to_number if phone else None,
        "room_name": livekit.room_name(call.id) if phone is None else None,
        "direction": phone.direction if phone else None,
        "scheduled_at": None,
        "variables": call.variables,
        "started_at": iso(call.started_at),
        "ended_at": iso(call.ended_at),
        "duration_seconds": round(duration) if duration is not None else None,
        "end_reason": END_REASONS.get(reason, call.end_reason) if reason else None,
        "outcome": analysis.get("outcome"),
        "recording_url": recording_url,
        "transcript": "\n".join(f"{SPEAKERS.get(t.role, t.role)}: {t.text}" for t in turns),
        "messages": [
            {
                "role": ROLES.get(t.role, t.role),
                "content": t.text,
                "interrupted": t.interrupted,
                "started_at": iso(t.started_at),
                "ended_at": iso(t.ended_at),
            }
            for t in turns
        ],
        "ai_summary": analysis.get("summary"),
        "analysis": analysis,
        "metadata": call.call_metadata,
        "latency": latency(turns),
        "credits_used": round(duration / 60, 4) if duration is not None else 0,
        "cost_cents": None,
        "twilio_call_sid": None,
        "created_at": iso(call.created_at),
        "updated_at": iso(call.ended_at or call.started_at or call.connected_at or call.created_at),
    }
