"""A scripted :class:`~callgate.pipeline.tools.ToolHost` for agent tests: it runs every tool after
``delay`` seconds, answering the next scripted outcome, or ``{"booked": <arguments>}`` when none is left,
and keeps what ran and what was recorded."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

from callgate.clock import utcnow
from callgate.pipeline.tools import ToolDefinition, ToolHost, ToolOutcome, ToolRecord


class ScriptedHost(ToolHost):
    def __init__(self, *outcomes: ToolOutcome, delay: float = 0.0) -> None:
        self.outcomes = list(outcomes)
        self.delay = delay
        self.ran: list[dict[str, Any]] = []
        """The arguments of every tool that ran (the side effect, once the delay is over)."""
        self.records: list[ToolRecord] = []
        self.recorded = asyncio.Event()

    async def run_tool(
        self, tool: ToolDefinition, *, tool_call_id: str, arguments: dict[str, Any]
    ) -> ToolOutcome:
        await asyncio.sleep(self.delay)
        self.ran.append(arguments)
        return self.outcomes.pop(0) if self.outcomes else ToolOutcome(result={"booked": arguments})

    def record_tool(self, record: ToolRecord) -> None:
        self.records.append(record)
        self.recorded.set()

    def now(self) -> datetime:
        return utcnow()

    def monotonic(self) -> float:
        return asyncio.get_running_loop().time()
