"""Vocode's webhook events made from callgate's: the ``vocode`` delivery format, and the call webhook
that a Vocode agent's ``webhook`` gives every call the dialect places with that agent.

Vocode publishes its event *types* (``EventType`` in its API) but not the bodies it sends; these follow
the event models of Vocode's open-source engine (``vocode.streaming.models.events``): ``type``,
``conversation_id`` (the call's Vocode id) and the event's own fields. Which callgate event becomes
which Vocode event:

- ``call.started`` → ``event_phone_call_connected``: ``to_phone_number``, ``from_phone_number``;
- ``call.ended`` or ``call.failed`` of a call that connected → ``event_phone_call_ended``:
  ``conversation_minutes``; of one that never connected → ``event_phone_call_did_not_connect``:
  ``telephony_status`` (``no-answer``, ``busy``, ``canceled`` or ``failed``);
- ``transcript.final`` (one turn) → ``event_message``: ``text``, ``sender`` (``bot``/``human``),
  ``timestamp`` (the turn's start, Unix seconds);
- ``call.recording.available`` → ``event_recording``: ``recording_url`` (the dialect's recording route);
- ``call.analyzed`` (after a connected call) → ``event_transcript``: ``transcript`` (``BOT: …`` lines).

Vocode's docs describe ``event_message`` as one message and ``event_transcript`` as the transcript of the
whole conversation, so the latter goes out with ``call.analyzed``: callgate's last event of a connected
call, whose transcript is complete. callgate has nothing that is ``event_action`` or
``event_human_detection``: they are never sent. Deliveries are signed with the team's signing secret like
every callgate webhook; a ``GET`` webhook gets the body's fields as query parameters
(:mod:`callgate.webhooks.wire`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

from callgate.api.dialects.vocode.views import transcript_text, vocode_id
from callgate.domain.lifecycle import EndReason
from callgate.webhooks.events import EventType
from callgate.webhooks.formats import WebhookFormat, register_format
from callgate.webhooks.targets import CallWebhook

__all__ = ["FORMAT", "call_webhook", "event_type", "render"]

SENDERS = {"agent": "bot", "user": "human"}
TELEPHONY_STATUS = {
    EndReason.JOIN_DEADLINE_MISSED.value: "no-answer",
    EndReason.NO_ANSWER.value: "no-answer",
    EndReason.BUSY.value: "busy",
    EndReason.API_REQUEST.value: "canceled",
}
"""Why a call never connected, in the telephony status words Vocode passes on; otherwise ``failed``."""

_SIMPLE = {
    EventType.CALL_STARTED.value: "event_phone_call_connected",
    EventType.TRANSCRIPT_FINAL.value: "event_message",
    EventType.CALL_RECORDING_AVAILABLE.value: "event_recording",
    EventType.CALL_ANALYZED.value: "event_transcript",
}
_ENDS = (EventType.CALL_ENDED.value, EventType.CALL_FAILED.value)


def event_type(type_: str, envelope: dict[str, Any]) -> str | None:
    """The Vocode event type of a callgate event (None: Vocode has no such event)."""
    if type_ in _ENDS:
        connected = (envelope.get("data") or {}).get("started_at") is not None
        return "event_phone_call_ended" if connected else "event_phone_call_did_not_connect"
    return _SIMPLE.get(type_)


def _unix(value: str | None) -> float | None:
    return datetime.fromisoformat(value).timestamp() if value else None


def _connected(data: dict[str, Any]) -> dict[str, Any]:
    phone = data.get("phone") or {}
    return {"to_phone_number": phone.get("to_number"), "from_phone_number": phone.get("from_number")}


def _ended(data: dict[str, Any]) -> dict[str, Any]:
    return {"conversation_minutes": round((data.get("duration_s") or 0.0) / 60, 4)}


def _did_not_connect(data: dict[str, Any]) -> dict[str, Any]:
    return {"telephony_status": TELEPHONY_STATUS.get(data.get("end_reason") or "", "failed")}


def _message(turn: dict[str, Any]) -> dict[str, Any]:
    role = str(turn.get("role"))
    return {
        "text": turn.get("text"),
        "sender": SENDERS.get(role, role),
        "timestamp": _unix(turn.get("started_at")),
    }


def _recording(data: dict[str, Any]) -> dict[str, Any]:
    """The recording as the Vocode dialect serves it (``GET /v1/calls/recording?id=``), on the origin of
    callgate's own recording URL (absolute when ``CALLGATE_PUBLIC_URL`` is set; any other URL is kept)."""
    url = str(data.get("recording_url") or "")
    native = f"/v1/calls/{data.get('id')}/recording"
    if url.endswith(native):
        url = f"{url.removesuffix(native)}/dialects/vocode/v1/calls/recording?id={vocode_id(str(data['id']))}"
    return {"recording_url": url}


def _transcript(data: dict[str, Any]) -> dict[str, Any]:
    turns = data.get("transcript") or []
    lines = ((str(t["role"]), str(t["text"])) for t in turns if t.get("role") != "tool" and t.get("text"))
    return {"transcript": transcript_text(lines)}


_FIELDS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "event_phone_call_connected": _connected,
    "event_phone_call_ended": _ended,
    "event_phone_call_did_not_connect": _did_not_connect,
    "event_message": _message,
    "event_recording": _recording,
    "event_transcript": _transcript,
}


def render(vendor_type: str, envelope: dict[str, Any]) -> bytes:
    """The body Vocode would send for ``envelope`` (a callgate event) as ``vendor_type``."""
    data: dict[str, Any] = envelope.get("data") or {}
    call_id = str(data.get("call_id") or data.get("id") or "")
    body = {"type": vendor_type, "conversation_id": vocode_id(call_id)}
    if (fields := _FIELDS.get(vendor_type)) is not None:
        body |= fields(data)
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


FORMAT = WebhookFormat(name="vocode", event_type=event_type, render=render)
register_format(FORMAT)


def call_webhook(hook: dict[str, Any] | None) -> dict[str, Any] | None:
    """The call webhook (``NewCall.webhook``) for a Vocode agent's stored ``webhook``, or None.

    Only the ``subscriptions`` are sent (none: nothing is), with the agent's ``method``."""
    if hook is None:
        return None
    return CallWebhook(
        url=str(hook["url"]),
        format=FORMAT.name,
        events=tuple(str(s) for s in hook.get("subscriptions") or ()),
        method=str(hook.get("method") or "POST"),
    ).stored()
