"""Body formats of deliveries: how one callgate event looks on the wire for one kind of destination.

The ``standard`` format sends the Standard Webhooks envelope as is. A dialect whose vendor had its own
webhook vocabulary (Vocode's ``event_phone_call_connected`` …) registers a format once, at import:

    register_format(WebhookFormat(name="vocode", event_type=vocode_type, render=vocode_body))

and creates its calls with ``NewCall(webhook=CallWebhook(url=…, format="vocode", events=[…]).stored())``.
``event_type`` maps a callgate type to the vendor's (None: the vendor has no such event, nothing is
sent); it also sees the event's envelope, for vendors whose one event is two of ours or the reverse
(Vocode tells a call that ended from one that never connected). It must give the same answer for the
same event every time: it is asked when the delivery is queued and again when it is sent. A
destination's ``events`` filter is matched against the mapped names. Every format is signed with the
same Standard Webhooks headers; a ``GET`` destination gets the body as query parameters
(:mod:`callgate.webhooks.wire`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["STANDARD", "WebhookFormat", "get_format", "register_format"]


def _compact(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass(frozen=True, slots=True)
class WebhookFormat:
    """``event_type(callgate_type, envelope) -> vendor type | None``;
    ``render(vendor_type, envelope) -> body`` (a JSON object, for destinations that use ``GET``)."""

    name: str
    event_type: Callable[[str, dict[str, Any]], str | None]
    render: Callable[[str, dict[str, Any]], bytes]
    content_type: str = "application/json"


STANDARD = WebhookFormat(
    name="standard",
    event_type=lambda type_, _envelope: type_,
    render=lambda _type, envelope: _compact(envelope),
)

_FORMATS: dict[str, WebhookFormat] = {STANDARD.name: STANDARD}


def register_format(fmt: WebhookFormat) -> None:
    """Make ``fmt`` available to destinations by its name (idempotent for the same object)."""
    existing = _FORMATS.get(fmt.name)
    if existing is not None and existing is not fmt:
        raise ValueError(f"a webhook format named {fmt.name!r} is already registered")
    _FORMATS[fmt.name] = fmt


def get_format(name: str) -> WebhookFormat:
    """The registered format (``standard`` if ``name`` is unknown, e.g. a dialect not loaded)."""
    return _FORMATS.get(name, STANDARD)
