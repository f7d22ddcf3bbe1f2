"""Reminders: what the agent says when the caller has gone quiet ("Are you still there?"), and the
goodbye it says when the call ends for silence.

A person on the phone who hears nothing for a while checks the line, and says goodbye before hanging up;
the agent does the same after ``reminder_after_s`` of silence on both sides, and when the session's
silence timeout ends the call (see :class:`~callgate.pipeline.options.PipelineOptions`).
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


GOODBYES: dict[str, str] = {
    "en": "I'll end the call now. Goodbye!",
    "de": "Ich beende jetzt den Anruf. Auf Wiederhören!",
    "fr": "Je vais mettre fin à l'appel. Au revoir !",
    "es": "Voy a terminar la llamada. ¡Adiós!",
    "it": "Chiudo la chiamata. Arrivederci!",
    "pt": "Vou encerrar a chamada. Adeus!",
    "nl": "Ik beëindig nu het gesprek. Tot ziens!",
}
"""Defaults per language of what the agent says when the silence timeout ends the call."""


def goodbye_for(language: str, text: str | None) -> str:
    """The call's goodbye at the silence timeout: the agent's own, else its language's, else none ("")."""
    if text is not None:
        return " ".join(text.split())
    return GOODBYES.get(language.split("-")[0].lower(), "")
