"""callgate's phone calls and agents as the Vocode dialect shows them (the seed's Call and Agent).

Vocode ids are UUIDs. callgate ids carry 128 random bits (``call_<32 hex>``), shown as that UUID, so an id
read through Vocode leads back to the same call or agent; sub-objects a callgate agent does not have on
its own (its voice, its always-available end-call action) get stable UUIDs derived from the agent's id.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from callgate.domain.lifecycle import CallStatus, EndReason
from callgate.domain.telephony import NO_TELEPHONY

if TYPE_CHECKING:
    from callgate.store.models import Agent, Call, TranscriptTurn
    from callgate.store.models_telephony import PhoneCall, VocodeAgent

STATUS = {
    CallStatus.CREATED: "not_started",
    CallStatus.CONNECTING: "in_progress",
    CallStatus.IN_PROGRESS: "in_progress",
    CallStatus.ENDED: "ended",
    CallStatus.FAILED: "error",
}

ERROR_MESSAGES = {
    EndReason.TELEPHONY_UNAVAILABLE: NO_TELEPHONY,
    EndReason.JOIN_DEADLINE_MISSED: "the call did not connect before its deadline",
    EndReason.SERVER_ERROR: "the call failed on the server",
    EndReason.NODE_LOST: "the server holding the call stopped",
    EndReason.CONCURRENCY_LIMIT: "the account already had as many live calls as it may have",
    EndReason.CARRIER_ERROR: "the carrier refused or failed the call",
}

SPEAKERS = {"agent": "BOT", "user": "HUMAN"}
REDACTED = "[redacted]"


def vocode_id(callgate_id: str) -> str:
    """The UUID form of a callgate id (``call_3f9c…`` → ``3f9c…-…``)."""
    _, _, hex_part = callgate_id.partition("_")
    try:
        return str(uuid.UUID(hex=hex_part))
    except ValueError:
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"callgate:{callgate_id}"))


def callgate_id(prefix: str, value: str) -> str | None:
    """The callgate id behind a Vocode UUID (a callgate id itself is accepted too); None if neither."""
    if value.startswith(f"{prefix}_"):
        return value
    try:
        return f"{prefix}_{uuid.UUID(value).hex}"
    except ValueError:
        return None


def _derived(owner: str, what: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"callgate:{owner}:{what}"))


def _iso(at: datetime | None) -> str | None:
    return at.isoformat().replace("+00:00", "Z") if at else None


def error_message(call: Call) -> str | None:
    if call.status != CallStatus.FAILED.value:
        return None
    reason = EndReason(call.end_reason) if call.end_reason else None
    return ERROR_MESSAGES.get(reason, f"the call failed ({call.end_reason})") if reason else "the call failed"


def transcript(turns: Sequence[TranscriptTurn]) -> str:
    """Vocode's transcript text: one ``BOT: …`` / ``HUMAN: …`` line per turn."""
    return transcript_text((t.role, t.text) for t in turns if t.spoken)


def transcript_text(lines: Iterable[tuple[str, str]]) -> str:
    """The same text from ``(role, text)`` pairs (e.g. the turns of a webhook's call)."""
    return "\n".join(f"{SPEAKERS.get(role, role.upper())}: {text}" for role, text in lines)


def agent_object(agent: Agent, objects: VocodeAgent | None) -> dict[str, Any]:
    user_id = vocode_id(agent.team_id)
    if objects is not None:
        voice, actions, webhook = dict(objects.voice), [dict(a) for a in objects.actions], objects.webhook
    else:
        # A callgate agent: its voice by name, and the end-call tool every prompt agent has.
        name = agent.voice or agent.tts.get("voice") or agent.tts.get("engine") or "default"
        voice = {
            "id": _derived(agent.id, "voice"),
            "type": "voice_base",
            "voice_name": name,
            "pitch": 0,
            "rate": 15,
        }
        actions = (
            [{"id": _derived(agent.id, "end_call"), "type": "action_end_conversation", "config": {}}]
            if agent.prompt is not None
            else []
        )
        webhook = None
    if voice.get("type") == "voice_eleven_labs":
        voice["api_key"] = REDACTED
    out: dict[str, Any] = {
        "id": vocode_id(agent.id),
        "user_id": user_id,
        "prompt": agent.prompt or "",
        "actions": [
            {"id": a["id"], "user_id": user_id, **{k: v for k, v in a.items() if k != "id"}} for a in actions
        ],
        "voice": {"id": voice.pop("id"), "user_id": user_id, **voice},
    }
    if agent.initial_message is not None:
        out["initial_message"] = agent.initial_message
    if webhook is not None:
        out["webhook"] = {
            "id": webhook["id"],
            "user_id": user_id,
            **{k: v for k, v in webhook.items() if k != "id"},
        }
    return out


def call_object(
    call: Call,
    phone: PhoneCall,
    *,
    agent: Agent | None,
    objects: VocodeAgent | None,
    turns: Sequence[TranscriptTurn],
) -> dict[str, Any]:
    """The Call (with the full agent), or the list's NormalizedCall when ``agent`` is None (its id only)."""
    out: dict[str, Any] = {
        "id": vocode_id(call.id),
        "user_id": vocode_id(call.team_id),
        "status": STATUS[CallStatus(call.status)],
    }
    if (message := error_message(call)) is not None:
        out["error_message"] = message
    out |= {
        "recording_available": call.recording_path is not None,
        "transcript": transcript(turns),
        "to_number": phone.to_number,
        "from_number": phone.from_number,
        "agent": agent_object(agent, objects) if agent is not None else vocode_id(call.agent_id),
        # Beyond the seed: what Vocode's client library reads (agent_phone_number is required there).
        "agent_phone_number": phone.from_number,
    }
    for key, at in (("start_time", call.started_at), ("end_time", call.ended_at)):
        if at is not None:
            out[key] = _iso(at)
    if call.variables:
        out["context"] = {k: str(v) for k, v in call.variables.items()}
    return out | phone.options
