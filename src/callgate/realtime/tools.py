"""The tool host of one live call: runs an agent's ``http``, ``client`` and ``send_dtmf`` tools.

* ``http`` goes to the node's :class:`~callgate.domain.tools.HttpTools` (signed, guarded, size-capped).
* ``client`` is asked of the caller's app over RTVI, pipecat's way: the server sends
  ``llm-function-call`` ``{function_name, tool_call_id, args}`` and waits (the tool's ``timeout_ms``)
  for ``llm-function-call-result`` ``{function_name, tool_call_id, arguments, result}`` (or
  ``error``). Only the RTVI transports (WebSocket, WebRTC) have such an app; elsewhere it is a tool error.
* ``send_dtmf`` needs a transport that can send key tones (:class:`SendsDigits`): the SIP trunk does
  (RFC 4733 events in its RTP). Web calls have no phone line, and Twilio Media Streams cannot carry
  key tones towards the caller: there the model gets a tool error saying so.

Every failure is a :class:`~callgate.pipeline.tools.ToolOutcome` error, never an exception.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import secrets
from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from callgate.clock import Clock
from callgate.domain.live_calls import CallPlan
from callgate.domain.tools import HttpTools
from callgate.pipeline.tools import ToolDefinition, ToolHost, ToolOutcome, ToolRecord
from callgate.realtime import rtvi

__all__ = ["RTVI_TRANSPORTS", "CallTools", "SendsDigits"]

log = logging.getLogger(__name__)

RTVI_TRANSPORTS = frozenset({"websocket", "webrtc"})
"""Transports whose far end is an app that speaks RTVI (and so can run client tools)."""
_DIGITS = re.compile(r"^[0-9*#A-D]{1,32}$")


@runtime_checkable
class SendsDigits(Protocol):
    """A phone transport that can press keys on the line (RFC 4733 events, Twilio ``<Play digits>``)."""

    async def send_digits(self, digits: str) -> None: ...


class CallTools(ToolHost):
    """See the module docstring. ``send`` sends one RTVI message; ``record`` keeps a tool record."""

    def __init__(
        self,
        *,
        plan: CallPlan,
        clock: Clock,
        transport: object,
        send: Callable[[str], Any],
        record: Callable[[ToolRecord], None],
        http: HttpTools | None,
    ) -> None:
        self._plan = plan
        self._clock = clock
        self._transport = transport
        self._send = send
        self._record = record
        self._http = http
        self._waiting: dict[str, tuple[str, asyncio.Future[ToolOutcome]]] = {}

    def now(self) -> datetime:
        return self._clock.now()

    def monotonic(self) -> float:
        return self._clock.monotonic()

    def record_tool(self, record: ToolRecord) -> None:
        self._record(record)

    async def run_tool(
        self, tool: ToolDefinition, *, tool_call_id: str, arguments: dict[str, Any]
    ) -> ToolOutcome:
        if tool.kind == "http":
            if self._http is None:
                return ToolOutcome(error="http tools are not available on this server")
            plan = self._plan
            return await self._http.call(
                tool,
                team_id=plan.team_id,
                call_id=plan.call_id,
                agent_id=plan.agent.id,
                variables=plan.variables,
                tool_call_id=tool_call_id,
                arguments=arguments,
            )
        if tool.kind == "client":
            return await self._client(tool, tool_call_id, arguments)
        if tool.kind == "send_dtmf":
            return await self._dtmf(str(arguments.get("digits", "")))
        return ToolOutcome(error=f"{tool.kind} tools do not run here")

    # ------------------------------------------------------------------ client tools

    async def _client(
        self, tool: ToolDefinition, tool_call_id: str, arguments: dict[str, Any]
    ) -> ToolOutcome:
        if self._plan.transport not in RTVI_TRANSPORTS:
            return ToolOutcome(error="this call has no app to run client tools (it is not a web call)")
        if not tool_call_id or tool_call_id in self._waiting:
            tool_call_id = f"call_{secrets.token_hex(8)}"
        future: asyncio.Future[ToolOutcome] = asyncio.get_running_loop().create_future()
        self._waiting[tool_call_id] = (tool.name, future)
        try:
            data = {"function_name": tool.name, "tool_call_id": tool_call_id, "args": arguments}
            await self._send(rtvi.message("llm-function-call", data))
            async with asyncio.timeout(tool.timeout_ms / 1000):
                return await future
        except TimeoutError:
            return ToolOutcome(error=f"the caller's app did not answer within {tool.timeout_ms} ms")
        except Exception as exc:  # the transport is gone: the call is ending anyway
            return ToolOutcome(error=f"the caller's app cannot be reached ({type(exc).__name__})")
        finally:
            self._waiting.pop(tool_call_id, None)

    def client_result(self, data: dict[str, Any]) -> str | None:
        """An ``llm-function-call-result`` from the app; returns why it is refused, or None."""
        tool_call_id = data.get("tool_call_id")
        waiting = self._waiting.get(tool_call_id) if isinstance(tool_call_id, str) else None
        if waiting is None:
            return f"no function call {tool_call_id!r} is waiting for a result"
        name, future = waiting
        if data.get("function_name") not in (None, name):
            return f"function call {tool_call_id!r} is {name!r}, not {data.get('function_name')!r}"
        if future.done():
            return f"function call {tool_call_id!r} already has a result"
        error = data.get("error")
        if error is not None:
            future.set_result(ToolOutcome(error=f"the caller's app failed: {str(error)[:500]}"))
        elif "result" not in data:
            future.set_result(ToolOutcome(error="the caller's app answered without a result"))
        else:
            # Results are JSON already (the message was parsed); bound what the model is given.
            text = json.dumps(data["result"], ensure_ascii=False)
            result = (
                data["result"] if len(text) <= rtvi.MAX_TEXT_BYTES else {"text": text[: rtvi.MAX_TEXT_BYTES]}
            )
            future.set_result(ToolOutcome(result=result))
        return None

    def close(self) -> None:
        """The call is over: nobody will answer the calls still waiting."""
        for _, future in self._waiting.values():
            if not future.done():
                future.set_result(ToolOutcome(error="the call ended"))

    # ------------------------------------------------------------------ keys

    async def _dtmf(self, digits: str) -> ToolOutcome:
        if not isinstance(self._transport, SendsDigits):
            return ToolOutcome(error=_NO_KEYS.get(self._plan.transport, _NO_KEYS[""]))
        digits = digits.upper()
        if not _DIGITS.match(digits):
            return ToolOutcome(error="digits are 0-9, *, # and A-D, at most 32")
        try:
            await self._transport.send_digits(digits)
        except ValueError as exc:  # e.g. the far end did not negotiate key events
            return ToolOutcome(error=f"the keys could not be sent: {exc}")
        except Exception as exc:
            log.warning("sending digits failed: %r", exc)
            return ToolOutcome(error="the keys could not be sent")
        return ToolOutcome(result={"ok": True, "sent": digits})


_NO_KEYS = {
    "websocket": "this is a web call: there is no phone line to press keys on",
    "webrtc": "this is a web call: there is no phone line to press keys on",
    "sip": "this is a web call: there is no phone line to press keys on",
    "twilio": "this call runs on Twilio Media Streams, which cannot send key tones to the line",
    "": "this call cannot send key tones (send_dtmf works on SIP trunk calls)",
}
"""Why ``send_dtmf`` cannot run, by the call's transport."""
