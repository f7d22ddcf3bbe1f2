"""Structured JSON logging on stdlib ``logging``.

The current call id and request id ride in context variables and are added to every record. Secrets
never reach a log line: keys and tokens are never passed to the logger, query strings (which carry
call tokens) are stripped from the URLs we log, and both formatters redact whatever still looks like a
secret (uvicorn logs each WebSocket's path with its query string).
"""

from __future__ import annotations

import json
import logging
import re
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

call_id_var: ContextVar[str | None] = ContextVar("call_id", default=None)
request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}
_SECRETISH = re.compile(
    r"(cg_(?:sk|pk|sh)_[A-Za-z0-9]+|eyJ[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]*)"
)
# Any ``token=`` (``participant_token=``…) query or form value, whatever its shape: a malformed token
# may still be most of a real one (a JWT missing its signature carries the call's claims).
_TOKEN_VALUE = re.compile(r"(?i)(\b\w*token=)[^&\s\"'<>]*")


def redact(text: str) -> str:
    """Mask ``token=`` values and anything shaped like an API key or a JWT (last line of defence)."""
    text = _TOKEN_VALUE.sub(r"\1[redacted]", text)
    return _SECRETISH.sub(lambda m: m.group(0)[:6] + "…[redacted]", text)


class RedactingFormatter(logging.Formatter):
    """The plain-text format (``CALLGATE_LOG_JSON=false``), redacted like the JSON one."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": redact(record.getMessage()),
        }
        if (call_id := call_id_var.get()) is not None:
            out["call_id"] = call_id
        if (request_id := request_id_var.get()) is not None:
            out["request_id"] = request_id
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exc"] = redact(self.formatException(record.exc_info))
        return json.dumps(out, default=str)


def configure_logging(*, level: str = "INFO", json_lines: bool = True) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if json_lines:
        handler.setFormatter(JSONFormatter())
    else:
        handler.setFormatter(RedactingFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # uvicorn's access log prints query strings, which carry call tokens: we log requests ourselves.
    logging.getLogger("uvicorn.access").disabled = True
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
