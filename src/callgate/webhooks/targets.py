"""Where one event goes: the team's endpoints, the agent's ``webhook_url``, the call's ``webhook``.

Endpoints are signed with their own secret; agent and call URLs with the team's signing secret
(``/v1/webhook-signing-secret``). A URL given both on the agent and on the call gets one delivery.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from callgate.store.models import Agent, Call, table
from callgate.store.models_webhooks import WebhookEndpoint
from callgate.webhooks.events import OPT_IN, EventType
from callgate.webhooks.formats import get_format
from callgate.webhooks.wire import METHODS

__all__ = ["CallWebhook", "EndpointFilter", "Target", "choose_targets", "targets_for", "team_endpoints"]


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


class EndpointFilter(Protocol):
    """What decides whether an endpoint gets an event (a row of :func:`team_endpoints`)."""

    id: str
    url: str
    events: list[str]
    agent_ids: list[str]
    enabled: bool


def endpoint_wants(endpoint: EndpointFilter, type_: str, agent_id: str | None) -> bool:
    if not endpoint.enabled:
        return False
    if endpoint.agent_ids and agent_id not in endpoint.agent_ids:
        return False
    if endpoint.events:
        return type_ in endpoint.events
    return type_ not in OPT_IN


def _default_wanted(type_: str) -> bool:
    return type_ not in OPT_IN


_endpoint = table(WebhookEndpoint).c
_ENDPOINTS = (
    select(_endpoint.id, _endpoint.url, _endpoint.events, _endpoint.agent_ids, _endpoint.enabled)
    .where(_endpoint.team_id == bindparam("team_id"), _endpoint.deleted_at.is_(None))
    .order_by(_endpoint.created_at)
)


async def team_endpoints(
    session: AsyncSession, *, team_id: str, endpoint_id: str | None = None
) -> list[EndpointFilter]:
    """The team's endpoints (not deleted), oldest first: only what routing needs (no secrets)."""
    stmt = _ENDPOINTS if endpoint_id is None else _ENDPOINTS.where(_endpoint.id == endpoint_id)
    rows: list[Any] = list(await session.execute(stmt, {"team_id": team_id}))
    return rows


def choose_targets(
    endpoints: list[EndpointFilter],
    *,
    call: Call | None,
    type_: EventType,
    envelope: dict[str, Any],
    agent_url: str | None,
    endpoints_only: bool = False,
) -> list[Target]:
    """Destinations of one event among ``endpoints`` (the team's) and, unless ``endpoints_only``, the
    call's own URLs; ``agent_url``: the ``webhook_url`` of the call's agent."""
    agent_id = call.agent_id if call is not None else None
    out = [
        Target("endpoint", e.url, "standard", "POST", endpoint_id=e.id)
        for e in endpoints
        if endpoint_wants(e, type_, agent_id)
    ]
    if call is None or endpoints_only:
        return out
    adhoc: dict[tuple[str, str], Target] = {}
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


async def targets_for(
    session: AsyncSession,
    *,
    team_id: str,
    call: Call | None,
    type_: EventType,
    envelope: dict[str, Any],
    endpoint_id: str | None = None,
) -> list[Target]:
    """Destinations of one event (``envelope`` is its payload). ``endpoint_id`` limits them to that
    endpoint (replays)."""
    endpoints = await team_endpoints(session, team_id=team_id, endpoint_id=endpoint_id)
    if call is None or endpoint_id is not None:
        return choose_targets(
            endpoints, call=call, type_=type_, envelope=envelope, agent_url=None, endpoints_only=True
        )
    agent_url = (
        await session.execute(select(Agent.webhook_url).where(Agent.id == call.agent_id))
    ).scalar_one_or_none()
    return choose_targets(endpoints, call=call, type_=type_, envelope=envelope, agent_url=agent_url)
