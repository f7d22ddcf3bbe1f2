"""Where one event goes: the team's endpoints, the agent's ``webhook_url``, the call's ``webhook``.

Endpoints are signed with their own secret; agent and call URLs with the team's signing secret
(``/v1/webhook-signing-secret``). A URL given both on the agent and on the call gets one delivery.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from callgate.store.models import Agent, Call
from callgate.store.models_webhooks import WebhookEndpoint
from callgate.webhooks.events import OPT_IN, EventType
from callgate.webhooks.formats import get_format
from callgate.webhooks.wire import METHODS

__all__ = ["CallWebhook", "Target", "targets_for"]


@dataclass(frozen=True, slots=True)
class CallWebhook:
    """A per-call destination, stored on ``call.webhook``.

    ``events`` filters by the *format's* event names (None: every non-opt-in event the format has);
    ``format`` names a :class:`~callgate.webhooks.formats.WebhookFormat`; ``method`` is ``POST``,
    ``PUT``, ``PATCH`` or ``GET`` (the body as query parameters, see :mod:`callgate.webhooks.wire`).
    """

    url: str
    format: str = "standard"
    events: tuple[str, ...] | None = None
    method: str = "POST"

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"webhook method must be one of {METHODS}, not {self.method!r}")

    def stored(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "format": self.format,
            "events": list(self.events) if self.events is not None else None,
            "method": self.method,
        }

    @classmethod
    def from_stored(cls, value: dict[str, Any]) -> CallWebhook:
        events = value.get("events")
        return cls(
            url=str(value["url"]),
            format=str(value.get("format") or "standard"),
            events=tuple(events) if events is not None else None,
            method=str(value.get("method") or "POST"),
        )


@dataclass(frozen=True, slots=True)
class Target:
    kind: str  # endpoint | agent | call
    url: str
    format: str
    method: str
    endpoint_id: str | None = None

    @property
    def destination(self) -> str:
        """The ordering key: the endpoint, or the URL with its format and method."""
        if self.endpoint_id is not None:
            return self.endpoint_id
        digest = hashlib.sha256(f"{self.format} {self.method} {self.url}".encode()).hexdigest()
        return f"url_{digest[:40]}"


def endpoint_wants(endpoint: WebhookEndpoint, type_: str, agent_id: str | None) -> bool:
    if not endpoint.enabled or endpoint.deleted_at is not None:
        return False
    if endpoint.agent_ids and agent_id not in endpoint.agent_ids:
        return False
    if endpoint.events:
        return type_ in endpoint.events
    return type_ not in OPT_IN


def _default_wanted(type_: str) -> bool:
    return type_ not in OPT_IN


async def targets_for(
    session: AsyncSession,
    *,
    team_id: str,
    call: Call | None,
    type_: EventType,
    envelope: dict[str, Any],
    endpoint_id: str | None = None,
    agent: Agent | None = None,
) -> list[Target]:
    """Destinations of one event (``envelope`` is its payload). ``endpoint_id`` limits them to that
    endpoint (replays). ``agent``: the call's agent, when already loaded in this transaction."""
    agent_id = call.agent_id if call is not None else None
    stmt = select(WebhookEndpoint).where(
        WebhookEndpoint.team_id == team_id, WebhookEndpoint.deleted_at.is_(None)
    )
    if endpoint_id is not None:
        stmt = stmt.where(WebhookEndpoint.id == endpoint_id)
    out = [
        Target("endpoint", e.url, "standard", "POST", endpoint_id=e.id)
        for e in (await session.execute(stmt.order_by(WebhookEndpoint.created_at))).scalars()
        if endpoint_wants(e, type_, agent_id)
    ]
    if call is None or endpoint_id is not None:
        return out
    adhoc: dict[tuple[str, str], Target] = {}
    if agent is not None and agent.id == call.agent_id:
        agent_url = agent.webhook_url
    else:
        agent_url = (
            await session.execute(select(Agent.webhook_url).where(Agent.id == call.agent_id))
        ).scalar_one_or_none()
    if agent_url and _default_wanted(type_):
        adhoc[(agent_url, "standard")] = Target("agent", agent_url, "standard", "POST")
    if call.webhook:
        spec = CallWebhook.from_stored(call.webhook)
        mapped = get_format(spec.format).event_type(type_, envelope)
        wanted = mapped is not None and (
            mapped in spec.events if spec.events is not None else _default_wanted(type_)
        )
        if wanted:
            adhoc[(spec.url, spec.format)] = Target("call", spec.url, spec.format, spec.method)
    return out + list(adhoc.values())
