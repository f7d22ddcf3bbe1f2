"""RTVI messages (pipecat's open client protocol) as callgate speaks them.

Every text frame is ``{"label": "rtvi-ai", "type": ..., "id": ..., "data": {...}}``. This module turns
pipeline events into messages and parses what clients send; transports only move the JSON.
See ``docs/realtime-protocol.md``.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any

from callgate.pipeline import frames as f

LABEL = "rtvi-ai"
PROTOCOL_VERSION = "1.0.0"
MAX_TEXT_BYTES = 16_384
MAX_DEPTH = 32
"""Deepest nesting of objects and arrays a client message may have (``client-ready`` needs 3)."""

# One token per string literal (an unterminated one runs to the end, so the scan never backtracks) or
# bracket: the brackets outside strings give the nesting depth in one linear pass, before ``json.loads``
# (whose C scanner recurses once per level and raises RecursionError on deep input).
_STRUCTURE = re.compile(r'"(?:[^"\\]|\\.?)*+(?:"|\Z)|[\[\]{}]', re.DOTALL)


class ProtocolError(ValueError):
    """A client message we cannot accept (close 4400)."""


@dataclass(frozen=True, slots=True)
class ClientMessage:
    type: str
    id: str | None
    data: dict[str, Any]


def message(type_: str, data: dict[str, Any] | None = None, *, id_: str | None = None) -> str:
    return json.dumps({"label": LABEL, "type": type_, "id": id_ or secrets.token_hex(4), "data": data or {}})


def parse(raw: str | bytes) -> ClientMessage:
    """A client's text message; anything unacceptable raises :class:`ProtocolError`, nothing else."""
    if len(raw) > MAX_TEXT_BYTES:
        raise ProtocolError("message too large")
    if isinstance(raw, bytes):
        try:
            raw = raw.decode()
        except UnicodeDecodeError as exc:
            raise ProtocolError("messages are UTF-8 text") from exc
    if "\x00" in raw or "\\u0000" in raw:
        raise ProtocolError("messages may not contain the NUL character")
    _check_depth(raw)
    try:
        obj = json.loads(raw)
    except (ValueError, RecursionError) as exc:  # RecursionError: belt and braces behind _check_depth
        raise ProtocolError("message is not JSON") from exc
    try:  # "\ud800" is valid JSON but not text: it would fail later, wherever the message is stored
        json.dumps(obj, ensure_ascii=False).encode()
    except (UnicodeEncodeError, ValueError) as exc:
        raise ProtocolError("messages may not contain unpaired surrogates") from exc
    if not isinstance(obj, dict) or obj.get("label") != LABEL or not isinstance(obj.get("type"), str):
        raise ProtocolError('messages are {"label": "rtvi-ai", "type": ..., "data": {...}}')
    data = obj.get("data") or {}
    if not isinstance(data, dict):
        raise ProtocolError("`data` must be an object")
    msg_id = obj.get("id")
    return ClientMessage(type=obj["type"], id=str(msg_id) if msg_id is not None else None, data=data)


def _check_depth(raw: str) -> None:
    depth = 0
    for token in _STRUCTURE.finditer(raw):
        bracket = token.group()
        if bracket in ("[", "{"):
            depth += 1
            if depth > MAX_DEPTH:
                raise ProtocolError(f"message nested deeper than {MAX_DEPTH} levels")
        elif bracket in ("]", "}"):
            depth -= 1


def _ms(value: float | None) -> int | None:
    return None if value is None else round(value)


def from_event(event: f.PipelineEvent) -> list[str]:
    """RTVI messages for one pipeline event (none for events the client does not see)."""
    match event:
        case f.UserStartedSpeaking():
            return [message("user-started-speaking")]
        case f.UserStoppedSpeaking():
            return [message("user-stopped-speaking")]
        case f.BotStartedSpeaking():
            return [message("bot-started-speaking")]
        case f.BotStoppedSpeaking():
            return [message("bot-stopped-speaking")]
        case f.BotInterrupted():
            return [message("bot-interrupted")]
        case f.UserTranscription(text=text, final=final):
            stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            return [
                message(
                    "user-transcription",
                    {"text": text, "final": final, "timestamp": stamp, "user_id": "caller"},
                )
            ]
        case f.BotLLMText(text=text):
            return [message("bot-llm-text", {"text": text})]
        case f.BotTTSText(text=text):
            return [message("bot-tts-text", {"text": text})]
        # A reply cut off before any of it was heard (no text) is no turn to the client: no metrics.
        case f.TurnEnded(record=record) if record.role == "agent" and record.text and record.latency:
            lat = record.latency
            return [
                message(
                    "metrics",
                    {
                        "processing": [
                            {"processor": "stt", "value": (lat.stt_ms or 0) / 1000},
                            {"processor": "agent", "value": (lat.agent_first_token_ms or 0) / 1000},
                        ],
                        "ttfb": [{"processor": "tts", "value": (lat.tts_first_audio_ms or 0) / 1000}],
                        "turn": {k: _ms(v) for k, v in lat.as_dict().items()}
                        | {
                            "interrupted": record.interrupted,
                            "barge_ins": [b.as_dict() for b in record.barge_ins],
                        },
                    },
                )
            ]
        case f.TransferRequested(target=target):
            return [message("server-message", {"type": "transfer", "target": target})]
        case _:
            return []
