"""Webhook schemas: endpoints, secrets, deliveries and their attempts, replays, analysis plans."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Self

from pydantic import AnyHttpUrl, Field, UrlConstraints, field_validator, model_validator

from callgate.api.schemas.common import BodyTime, Public, Strict
from callgate.webhooks.events import EventType
from callgate.webhooks.outbox import REPLAY_PAGE
from callgate.webhooks.schema_check import check_schema

WebhookURL = Annotated[AnyHttpUrl, UrlConstraints(max_length=2048)]
MAX_OVERLAP_S = 7 * 24 * 3600


def _unique(values: list[Any]) -> list[Any]:
    return list(dict.fromkeys(values))


class _EndpointFields(Strict):
    description: str | None = Field(default=None, max_length=200)
    events: list[EventType] = Field(
        default_factory=list,
        max_length=len(EventType),
        description="Event types to send; empty: every type except the opt-in `transcript.partial`.",
    )
    agent_ids: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(
        default_factory=list, max_length=100, description="Only calls of these agents; empty: all agents."
    )
    enabled: bool = Field(default=True, strict=True)

    @field_validator("events", "agent_ids")
    @classmethod
    def _dedupe(cls, value: list[Any]) -> list[Any]:
        return _unique(value)


class WebhookEndpointCreate(_EndpointFields):
    url: WebhookURL


class WebhookEndpointUpdate(Strict):
    """Only the fields given change."""

    url: WebhookURL | None = None
    description: str | None = Field(default=None, max_length=200)
    events: list[EventType] | None = Field(default=None, max_length=len(EventType))
    agent_ids: list[Annotated[str, Field(min_length=1, max_length=64)]] | None = Field(
        default=None, max_length=100
    )
    enabled: bool | None = Field(default=None, strict=True)

    @model_validator(mode="after")
    def _no_nulls(self) -> Self:
        for name in ("url", "events", "agent_ids", "enabled"):
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValueError(f"`{name}` cannot be null")
        return self

    def changes(self) -> dict[str, Any]:
        out = self.model_dump(mode="json", exclude_unset=True)
        for name in ("events", "agent_ids"):
            if name in out:
                out[name] = _unique(out[name])
        return out


class WebhookEndpointPublic(Public):
    id: str
    url: str
    description: str | None
    events: list[str]
    agent_ids: list[str]
    enabled: bool
    previous_secret_expires_at: datetime | None = Field(
        description="While set and in the future, deliveries are also signed with the previous secret."
    )
    created_at: datetime
    updated_at: datetime


class WebhookEndpointCreated(WebhookEndpointPublic):
    secret: str = Field(description="The signing secret (`whsec_…`). Shown only now: store it.")


class SecretRotate(Strict):
    overlap_s: int = Field(
        default=86_400,
        strict=True,
        ge=0,
        le=MAX_OVERLAP_S,
        description="How long the old secret keeps signing too (both signatures are sent).",
    )


class SecretRotated(Public):
    secret: str = Field(description="The new signing secret. Shown only now: store it.")
    previous_secret_expires_at: datetime | None


class SigningSecretPublic(Public):
    """The team's secret for agent and call `webhook_url` destinations (the secret itself is not shown)."""

    created_at: datetime
    rotated_at: datetime
    previous_secret_expires_at: datetime | None


class AttemptPublic(Public):
    number: int
    url: str
    started_at: datetime
    duration_ms: int
    status_code: int | None
    error: str | None
    response_excerpt: str | None


class DeliveryPublic(Public):
    id: str
    event_id: str = Field(description="Sent as `webhook-id`; the same for retries and replays.")
    event_type: str
    call_id: str | None
    endpoint_id: str | None
    target: str = Field(description="`endpoint`, `agent` (the agent's webhook_url) or `call`.")
    url: str
    status: str = Field(description="`pending`, `succeeded`, `dead` or `cancelled`.")
    attempts: int
    next_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    updated_at: datetime
    delivered_at: datetime | None


class DeliveryDetail(DeliveryPublic):
    payload: dict[str, Any]
    history: list[AttemptPublic]


class ReplayCreate(Strict):
    """Send recorded events again: all of one call's, or all in a time range.

    One request queues at most `limit` events (1,000 at most), oldest first. When more match, the
    answer's `next_cursor` is set: send the same body again with `cursor` set to it for the next page.
    """

    call_id: str | None = Field(default=None, max_length=64)
    created_after: BodyTime | None = None
    created_before: BodyTime | None = None
    endpoint_id: str | None = Field(default=None, max_length=64, description="Only to this endpoint.")
    event_types: list[EventType] | None = None
    limit: int = Field(
        default=REPLAY_PAGE, ge=1, le=REPLAY_PAGE, description="Events queued by this request."
    )
    cursor: str | None = Field(
        default=None,
        pattern=r"^[0-9]{1,18}$",
        description="`next_cursor` of the previous answer: continue the replay after it.",
    )

    @model_validator(mode="after")
    def _scope(self) -> Self:
        if self.call_id is None and (self.created_after is None or self.created_before is None):
            raise ValueError("give call_id, or both created_after and created_before")
        for value in (self.created_after, self.created_before):
            if value is not None and value.tzinfo is None:
                raise ValueError("times need a timezone, e.g. Z")
        if self.created_after and self.created_before and self.created_after >= self.created_before:
            raise ValueError("created_after must be before created_before")
        return self


class ReplayPublic(Public):
    deliveries: int = Field(description="Deliveries queued.")
    events: int = Field(description="Events replayed by this request.")
    next_cursor: str | None = Field(
        description="Set when more events match: send the same request with this `cursor` to go on."
    )


class EventTypePublic(Public):
    type: str
    description: str
    opt_in: bool


class AnalysisPlanPut(Strict):
    data_schema: dict[str, Any] = Field(
        description="JSON Schema (object) of the data to extract from each call's transcript."
    )
    instructions: str | None = Field(default=None, max_length=4000)

    @field_validator("data_schema")
    @classmethod
    def _usable(cls, value: dict[str, Any]) -> dict[str, Any]:
        problems = check_schema(value, path="data_schema")
        if problems:
            raise ValueError("; ".join(problems[:10]))
        if value.get("type") != "object":
            raise ValueError('data_schema must describe an object (`"type": "object"`)')
        return value


class AnalysisPlanPublic(Public):
    agent_id: str
    data_schema: dict[str, Any]
    instructions: str | None
    created_at: datetime
    updated_at: datetime
