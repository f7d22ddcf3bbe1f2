"""Server-sent events, as the OpenAI-compatible and Anthropic streaming APIs send them."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["Items", "SSEParser", "read_in_task"]

T = TypeVar("T")
Items = asyncio.Queue[T | Exception | None]
"""What a reader hands over: items, an exception to raise in their place, then None (the end)."""


async def read_in_task(
    read: Callable[[Items[T]], Coroutine[Any, Any, None]], name: str
) -> AsyncGenerator[T, None]:
    """The items ``read`` puts in its queue, as they come. The HTTP exchange runs in a task this
    generator owns: abandoning the answer (a barge-in closes the generator) cancels it, and the
    cancellation unwinds httpx's stream iterators and closes the connection at once."""
    queue: Items[T] = asyncio.Queue()
    reader = asyncio.create_task(read(queue), name=name)
    try:
        while (item := await queue.get()) is not None:
            if isinstance(item, Exception):
                raise item
            yield item
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader


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
