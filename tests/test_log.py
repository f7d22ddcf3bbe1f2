"""Redaction, the last line of defence between a secret and a log line."""

from __future__ import annotations

import logging

import pytest

from callgate.log import JSONFormatter, RedactingFormatter, redact

TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJjYWxsIjoiY2FsbF8xMjMiLCJ0ZWFtIjoidF8xIn0"


@pytest.mark.parametrize(
    ("text", "hidden"),
    [
        (f'"WebSocket /v1/calls/c/ws?token={TOKEN}.c2lnbmF0dXJl" [accepted]', TOKEN),
        (f'"WebSocket /v1/calls/c/ws?token={TOKEN}." [accepted]', TOKEN),  # empty signature
        (f"/ws?token={TOKEN}", TOKEN),  # no signature part at all
        ("/ws?a=1&token=opaque-secret-value&b=2", "opaque-secret-value"),
        ("/rooms?participant_token=opaque-secret-value", "opaque-secret-value"),
        ("/ws?TOKEN=opaque%20secret", "opaque%20secret"),
        (f"bearer {TOKEN}.", TOKEN),
        ("key cg_sk_AbC123secret", "AbC123secret"),
    ],
)
def test_secrets_are_redacted_whatever_their_shape(text: str, hidden: str) -> None:
    assert hidden not in redact(text)


def test_other_text_is_left_alone() -> None:
    text = "GET /v1/calls?limit=5&max_tokens=12 200"
    assert redact(text) == text
    assert redact("/ws?a=1&token=x&b=2") == "/ws?a=1&token=[redacted]&b=2"


@pytest.mark.parametrize("formatter", [JSONFormatter(), RedactingFormatter("%(message)s")])
def test_both_formatters_redact_messages_and_tracebacks(formatter: logging.Formatter) -> None:
    try:
        raise ValueError(f"token={TOKEN}.")
    except ValueError as exc:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "%s", (f"?token={TOKEN}.",), None)
        record.exc_info = (type(exc), exc, exc.__traceback__)
    assert TOKEN not in formatter.format(record)
