"""Agents' tools in the store, and the executor of ``http`` tools.

Stored form: the agent's ``tools`` column holds the validated definitions; every ``http`` header value is
sealed (:mod:`callgate.store.sealing`) when saved and opened only here, when a request is made. The API
shows header names with :data:`HIDDEN` for values; sending :data:`HIDDEN` back on an update keeps the
stored value, so a read-modify-write of an agent never loses its secrets. Like the other sealed secrets,
header values sealed under a previous ``CALLGATE_SECRET_KEY`` are re-sealed under the current one at
start (:func:`seal_stored_secrets`).

:class:`HttpTools` makes the request of one ``http`` tool call: a JSON body with the arguments, the
call's id and variables, signed with Standard Webhooks headers under the team's signing secret (the one
``/v1/webhook-signing-secret`` manages, so receivers verify it as they verify webhooks), sent through
the outbound-request guard, its answer read up to a size cap. Every failure — a refused address, a
timeout, a non-2xx answer, an answer too large — is a :class:`ToolOutcome` error for the LLM, never an
exception: a broken tool must not end the call.
"""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import datetime
from typing import Any

import httpx
from sqlalchemy import Text, cast, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import flag_modified

from callgate.clock import Clock
from callgate.errors import CallgateError
from callgate.net_guard import OutboundPolicy, OutboundRefused, guarded_client
from callgate.pipeline.tools import ToolDefinition, ToolOutcome
from callgate.store.db import Database
from callgate.store.models import Agent
from callgate.store.sealing import PREFIX, SealingError, current_prefix, open_, seal
from callgate.webhooks import endpoints, wire
from callgate.webhooks.events import new_id
from callgate.webhooks.signing import UnusableSecret, signed_headers

__all__ = ["HIDDEN", "MAX_ANSWER_BYTES", "HttpTools", "public_tools", "seal_stored_secrets", "seal_tools"]

log = logging.getLogger(__name__)

HIDDEN = "********"
MAX_ANSWER_BYTES = 32_768
"""An ``http`` tool's answer larger than this is refused (a tool error): it would swamp the model."""


def seal_tools(
    tools: list[dict[str, Any]], *, stored: list[dict[str, Any]] | None = None
) -> list[dict[str, Any]]:
    """``tools`` ready to store: header values sealed; :data:`HIDDEN` replaced by the value stored
    for the same tool and header in ``stored`` (an update that did not change it)."""
    before = {t.get("name"): t.get("headers") or {} for t in stored or [] if t.get("type") == "http"}
    out: list[dict[str, Any]] = []
    for tool in tools:
        if tool.get("type") != "http" or not tool.get("headers"):
            out.append(tool)
            continue
        headers: dict[str, str] = {}
        for name, value in tool["headers"].items():
            if value == HIDDEN:
                kept = before.get(tool["name"], {}).get(name)
                if kept is None:
                    raise ValueError(f"tool {tool['name']!r}: header {name!r} has no stored value to keep")
                headers[name] = kept
            else:
                headers[name] = value if value.startswith(PREFIX) else seal(value)
        out.append({**tool, "headers": headers})
    return out


def public_tools(tools: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """``tools`` as the API shows them: header values hidden."""
    return [
        {**t, "headers": {name: HIDDEN for name in t["headers"]}} if t.get("headers") else t
        for t in tools or []
    ]


async def seal_stored_secrets(session: AsyncSession) -> int:
    """Re-seal ``http`` tool header values sealed under a previous secret key (like the carriers'
    secrets); returns how many agents were rewritten. A value no installed key opens is left as it is
    (the tool then answers the model an error; setting the header again replaces it)."""
    current = current_prefix()
    stmt = select(Agent).where(cast(Agent.tools, Text).contains(PREFIX))
    count = 0
    for agent in (await session.execute(stmt)).scalars():
        changed = False
        tools: list[dict[str, Any]] = []
        for tool in agent.tools or []:
            headers = dict(tool.get("headers") or {})
            for name, value in headers.items():
                if isinstance(value, str) and value.startswith(PREFIX) and not value.startswith(current):
                    try:
                        headers[name], changed = seal(open_(value)), True
                    except SealingError as exc:
                        log.error("agent %s: tool header %s cannot be re-sealed (%s)", agent.id, name, exc)
            tools.append({**tool, "headers": headers} if tool.get("headers") else tool)
        if changed:
            agent.tools = tools
            flag_modified(agent, "tools")
            count += 1
    await session.flush()
    return count


class HttpTools:
    """Runs ``http`` tool calls for the node's sessions (one shared, guarded connection pool)."""

    def __init__(self, *, db: Database, clock: Clock, policy: OutboundPolicy) -> None:
        self._db = db
        self._clock = clock
        self._policy = policy
        self._client: httpx.AsyncClient | None = None

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            # The timeout is each tool's own (below); this one only bounds what that does not.
            self._client = guarded_client(self._policy, timeout=60.0, max_redirects=3)
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def call(
        self,
        tool: ToolDefinition,
        *,
        team_id: str,
        call_id: str,
        agent_id: str,
        variables: dict[str, Any],
        tool_call_id: str,
        arguments: dict[str, Any],
    ) -> ToolOutcome:
        """One request of ``tool`` (see the module docstring). Never raises but for cancellation."""
        seconds = tool.timeout_ms / 1000
        try:
            async with asyncio.timeout(seconds):
                return await self._call(tool, team_id, call_id, agent_id, variables, tool_call_id, arguments)
        except TimeoutError:
            return ToolOutcome(error=f"the tool did not answer within {tool.timeout_ms} ms")

    async def _call(
        self,
        tool: ToolDefinition,
        team_id: str,
        call_id: str,
        agent_id: str,
        variables: dict[str, Any],
        tool_call_id: str,
        arguments: dict[str, Any],
    ) -> ToolOutcome:
        try:
            headers = {name: open_(value) for name, value in (tool.config.get("headers") or {}).items()}
            secrets = await self._secrets(team_id)
        except (SealingError, CallgateError) as exc:
            log.error("tool %s cannot be signed: %s", tool.name, exc)
            return ToolOutcome(error="the tool is not available right now")
        now = self._clock.now()
        payload = {
            "type": "tool.call",
            "tool": tool.name,
            "tool_call_id": tool_call_id,
            "arguments": arguments,
            "call": {"id": call_id, "agent_id": agent_id, "variables": variables},
            "timestamp": now.isoformat().replace("+00:00", "Z"),
        }
        body = json.dumps(payload, ensure_ascii=False, default=str).encode()
        request = wire.prepare(
            method=str(tool.config.get("method") or "POST"),
            url=str(tool.config["url"]),
            body=body,
            content_type="application/json",
        )
        try:
            signature = signed_headers(
                message_id=new_id("event"), body=request.signed, secrets_=secrets, timestamp=now
            )
        except UnusableSecret as exc:
            log.error("tool %s cannot be signed: %s", tool.name, exc)
            return ToolOutcome(error="the tool is not available right now")
        sent = {**headers, **signature, "user-agent": "callgate-tools/1"}
        if request.content_type:
            sent["content-type"] = request.content_type
        try:
            async with self._http().stream(
                request.method, request.url, content=request.content, headers=sent
            ) as response:
                answer = await self._read(response)
                status = response.status_code
        except OutboundRefused as exc:
            return ToolOutcome(error=f"the tool's address is refused: {exc.detail}")
        except _TooLarge:
            return ToolOutcome(error=f"the tool's answer is larger than {MAX_ANSWER_BYTES} bytes")
        except httpx.TimeoutException:
            return ToolOutcome(error=f"the tool did not answer within {tool.timeout_ms} ms")
        except httpx.HTTPError as exc:
            return ToolOutcome(error=f"the tool's server cannot be reached ({type(exc).__name__})")
        text = answer.decode(errors="replace")
        if not 200 <= status < 300:
            return ToolOutcome(error=f"the tool's server answered {status}: {text[:300]}".rstrip(": "))
        if not text.strip():
            return ToolOutcome(result={"ok": True})
        try:
            return ToolOutcome(result=json.loads(text))
        except ValueError:
            return ToolOutcome(result={"text": text})

    @staticmethod
    async def _read(response: httpx.Response) -> bytes:
        declared = response.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > MAX_ANSWER_BYTES:
            raise _TooLarge
        body = bytearray()
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) > MAX_ANSWER_BYTES:
                raise _TooLarge
        return bytes(body)

    async def _secrets(self, team_id: str) -> list[str]:
        now: datetime = self._clock.now()

        async def job(session: Any) -> list[str]:
            row = await endpoints.team_secret(session, team_id=team_id, now=now)
            return endpoints.secret_set(row).active(now)

        return await self._db.write(job)


class _TooLarge(Exception):
    pass
