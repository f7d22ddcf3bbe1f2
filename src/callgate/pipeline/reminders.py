"""Reminders: what the agent says when the caller has gone quiet ("Are you still there?").

A person on the phone who hears nothing for a while checks the line; the agent does the same after
``reminder_after_s`` of silence on both sides (see :class:`~callgate.pipeline.options.PipelineOptions`).
"""

from __future__ import annotations

REMINDERS: dict[str, tuple[str, ...]] = {
    "en": ("Are you still there?",),
    "de": ("Sind Sie noch da?",),
    "fr": ("Êtes-vous toujours là ?",),
    "es": ("¿Sigue ahí?",),
    "it": ("È ancora in linea?",),
    "pt": ("Ainda está aí?",),
    "nl": ("Bent u er nog?",),
}
"""Defaults per language (the call's ``language``); a language without them has no reminders unless the
agent gives its own."""


def reminders_for(language: str, messages: tuple[str, ...] | None) -> tuple[str, ...]:
    """The call's reminders: the agent's own, else its language's defaults, else none."""
    if messages is not None:
        return tuple(m for m in (" ".join(m.split()) for m in messages) if m)
    return REMINDERS.get(language.split("-")[0].lower(), ())
