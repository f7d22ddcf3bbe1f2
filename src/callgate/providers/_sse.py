"""Server-sent events, as the OpenAI-compatible and Anthropic streaming APIs send them."""

from __future__ import annotations

__all__ = ["SSEParser"]


class SSEParser:
    """Line by line: returns an event's ``data`` (multi-line data joined by newlines) when its blank
    line arrives. Comments and ``event:``/``id:``/``retry:`` are ignored (the JSON says its type)."""

    def __init__(self) -> None:
        self._data: list[str] = []

    def feed(self, line: str) -> str | None:
        if line.startswith("data:"):
            self._data.append(line[5:].removeprefix(" "))
        elif not line and self._data:
            return self.flush()
        return None

    def flush(self) -> str | None:
        data, self._data = self._data, []
        return "\n".join(data) if data else None
