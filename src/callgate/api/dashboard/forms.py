"""From the dashboard's flat HTML forms to the REST API's request schemas, and back from their
validation errors to the form field each one concerns (shown at that field)."""

from __future__ import annotations

import re
from collections.abc import Collection
from typing import Any

from pydantic import ValidationError

from callgate.domain.tools import HIDDEN
from callgate.errors import ValidationFailed

FORM = "_form"
"""The key of an error that concerns no one field (shown above the form)."""

_INDEX = re.compile(r"\[(\d+)\]")


def _parts(location: Any) -> list[str | int]:
    """A pydantic ``loc`` tuple or a domain error's dotted ``field`` (``body.inbound.x[0]``) as parts."""
    if isinstance(location, str):
        parts: list[str | int] = []
        for piece in location.split("."):
            name, *indexes = _INDEX.split(piece)
            parts += [name] if name else []
            parts += [int(i) for i in indexes if i]
        location = parts
    return [p for p in location if p != "body"]


def _where(parts: list[str | int]) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else f".{part}" if out else part
    return out


def field_errors(
    exc: ValidationError | ValidationFailed,
    known: Collection[str],
    *,
    tags: Collection[str] = (),
    at: tuple[str, ...] = (),
) -> dict[str, str]:
    """The first error for each form field of ``known`` that ``exc`` locates (``outbound.host`` is
    the field ``outbound_host``); what falls under no field goes under :data:`FORM`. ``tags`` are the
    values of discriminators (a tool's ``type``, a carrier's ``kind``) that pydantic puts in a location
    and a person would not recognise there. ``at`` is where the validated value sits in the form
    (a part validated on its own)."""
    if isinstance(exc, ValidationError):
        found = [(e["loc"], str(e["msg"]).removeprefix("Value error, ")) for e in exc.errors()]
    else:
        found = [
            (e.get("field") or e.get("loc") or (), str(e.get("message") or e.get("msg") or exc.detail))
            for e in exc.errors or [{}]
        ]
    errors: dict[str, str] = {}
    for location, message in found:
        parts = [p for p in [*at, *_parts(location)] if p not in tags]
        field, where = _field(parts, known)
        errors.setdefault(field, f"{where}: {message}" if where else message)
    return errors


def _field(parts: list[str | int], known: Collection[str]) -> tuple[str, str]:
    """The known field the location names (the longest run of its names), and where inside that
    field the error is (``tools[0].url``; empty when the field is the whole of it)."""
    positions = [i for i, p in enumerate(parts) if isinstance(p, str)]
    names = [str(parts[i]) for i in positions]
    for start in range(len(names)):
        for end in range(len(names), start, -1):
            if (candidate := "_".join(names[start:end])) in known:
                rest = parts[positions[end - 1] + 1 :]
                return candidate, _where([names[end - 1], *rest]) if rest else ""
    return FORM, _where(parts)


def secret(value: str | None) -> tuple[bool, str | None]:
    """A secret's form field: ``(False, None)`` when it shows :data:`HIDDEN` (keep the stored value),
    else ``(True, the new value or None to remove it)``."""
    if value == HIDDEN:
        return False, None
    return True, value or None
