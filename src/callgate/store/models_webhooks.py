"""Tables of events, webhooks and post-call analysis (migration ``0002``).

The outbox is ``webhook_event`` (what happened, with its payload) plus ``webhook_delivery`` (one row per
event and destination, the unit the dispatcher claims, retries and finally marks ``succeeded`` or
``dead``); every HTTP attempt is a ``webhook_attempt``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from callgate.store.models import Base
from callgate.store.sealing import SealedString


class WebhookEndpoint(Base):
    """A destination registered with ``/v1/webhook-endpoints``; signed with its own secret."""

    __tablename__ = "webhook_endpoint"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    team_id: Mapped[str] = mapped_column(ForeignKey("team.id", ondelete="CASCADE"))
    url: Mapped[str] = mapped_column(String(2048))
    description: Mapped[str | None] = mapped_column(String(200))
    events: Mapped[list[str]]
    """Event types delivered; empty means every type that is not opt-in."""
    agent_ids: Mapped[list[str]]
    """Only calls of these agents; empty means every agent."""
    enabled: Mapped[bool] = mapped_column(Boolean)
    secret: Mapped[str] = mapped_column(SealedString())
    previous_secret: Mapped[str | None] = mapped_column(SealedString())
    previous_secret_expires_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    deleted_at: Mapped[datetime | None]

    __table_args__ = (Index(None, "team_id", "created_at"),)


class WebhookSigningSecret(Base):
    """The team's secret for destinations that are not endpoints (agent and call ``webhook_url``)."""

    __tablename__ = "webhook_signing_secret"

    team_id: Mapped[str] = mapped_column(ForeignKey("team.id", ondelete="CASCADE"), primary_key=True)
    secret: Mapped[str] = mapped_column(SealedString())
    previous_secret: Mapped[str | None] = mapped_column(SealedString())
    previous_secret_expires_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    rotated_at: Mapped[datetime]


class WebhookEvent(Base):
    """One event, with the Standard Webhooks envelope as sent. ``seq`` orders a call's events."""

    __tablename__ = "webhook_event"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(40), unique=True)
    """Public id, sent as ``webhook-id`` on every delivery of this event."""
    team_id: Mapped[str] = mapped_column(ForeignKey("team.id", ondelete="CASCADE"))
    call_id: Mapped[str | None] = mapped_column(String(40), index=True)
    agent_id: Mapped[str | None] = mapped_column(String(40))
    type: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]

    __table_args__ = (Index(None, "team_id", "created_at"),)


class WebhookDelivery(Base):
    """One event to one destination."""

    __tablename__ = "webhook_delivery"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    team_id: Mapped[str] = mapped_column(ForeignKey("team.id", ondelete="CASCADE"))
    event_seq: Mapped[int] = mapped_column(ForeignKey("webhook_event.seq", ondelete="CASCADE"), index=True)
    event_type: Mapped[str] = mapped_column(String(64))
    call_id: Mapped[str | None] = mapped_column(String(40))
    endpoint_id: Mapped[str | None] = mapped_column(
        ForeignKey("webhook_endpoint.id", ondelete="CASCADE"), index=True
    )
    target: Mapped[str] = mapped_column(String(16))
    """``endpoint``, ``agent`` or ``call``: where the destination came from."""
    destination: Mapped[str] = mapped_column(String(64))
    """Ordering key: a call's deliveries to one destination go out one at a time, in event order."""
    url: Mapped[str] = mapped_column(String(2048))
    method: Mapped[str] = mapped_column(String(8))
    format: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer)
    next_attempt_at: Mapped[datetime]
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    delivered_at: Mapped[datetime | None]

    __table_args__ = (
        Index(None, "status", "next_attempt_at"),
        Index(None, "team_id", "created_at"),
        Index(None, "call_id", "destination", "status"),
    )


class WebhookAttempt(Base):
    """One HTTP request of a delivery and what came back."""

    __tablename__ = "webhook_attempt"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    delivery_id: Mapped[str] = mapped_column(
        ForeignKey("webhook_delivery.id", ondelete="CASCADE"), index=True
    )
    number: Mapped[int] = mapped_column(Integer)
    url: Mapped[str] = mapped_column(String(2048))
    started_at: Mapped[datetime]
    duration_ms: Mapped[int] = mapped_column(Integer)
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(String(500))
    response_excerpt: Mapped[str | None] = mapped_column(Text)


class AnalysisPlan(Base):
    """What post-call analysis extracts for an agent's calls (``/v1/agents/{id}/analysis-plan``)."""

    __tablename__ = "analysis_plan"

    agent_id: Mapped[str] = mapped_column(ForeignKey("agent.id", ondelete="CASCADE"), primary_key=True)
    team_id: Mapped[str] = mapped_column(ForeignKey("team.id", ondelete="CASCADE"))
    instructions: Mapped[str | None] = mapped_column(Text)
    data_schema: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class AnalysisJob(Base):
    """A call waiting for its post-call analysis; written in the transaction that ends the call."""

    __tablename__ = "analysis_job"

    call_id: Mapped[str] = mapped_column(ForeignKey("call.id", ondelete="CASCADE"), primary_key=True)
    team_id: Mapped[str] = mapped_column(ForeignKey("team.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer)
    next_attempt_at: Mapped[datetime]
    last_error: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]

    __table_args__ = (Index(None, "status", "next_attempt_at"),)
