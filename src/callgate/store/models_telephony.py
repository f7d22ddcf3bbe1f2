"""Tables of carriers, phone calls and the Vocode dialect's agent objects (migrations ``0004``, ``0008``).

``carrier`` is a team's way to the phone network: a SIP trunk or a Twilio account (migration ``0008``).
Its secrets (the SIP digest passwords, Twilio's auth token) are sealed at rest like webhook signing
secrets (:mod:`callgate.store.sealing`); everything else is plain configuration in ``config``.

``phone_call`` is the phone side of a call of kind ``phone`` (one row per such call): who calls whom and
from which of the team's numbers. ``vocode_agent`` keeps what a Vocode agent has beyond a callgate agent
— its voice, actions and webhook objects with their own ids — so that the Vocode dialect can show them
back exactly, and so that webhook delivery can read the Vocode ``webhook`` (see ``VocodeAgent.webhook``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from callgate.store.models import Base
from callgate.store.sealing import SealedString
from callgate.store.types import JSONType


class PhoneCall(Base):
    __tablename__ = "phone_call"

    call_id: Mapped[str] = mapped_column(ForeignKey("call.id", ondelete="CASCADE"), primary_key=True)
    team_id: Mapped[str] = mapped_column(ForeignKey("team.id", ondelete="CASCADE"))
    direction: Mapped[str] = mapped_column(String(16))
    """``outbound`` (placed by callgate) or ``inbound``."""
    from_number: Mapped[str] = mapped_column(String(32))
    to_number: Mapped[str] = mapped_column(String(32))
    phone_number_id: Mapped[str | None] = mapped_column(ForeignKey("phone_number.id", ondelete="SET NULL"))
    """The team's number the call is placed from (outbound) or arrived at (inbound)."""
    options: Mapped[dict[str, Any]]
    """Placement options given with the request (e.g. Vocode's ``hipaa_compliant``), kept as given."""
    created_at: Mapped[datetime]

    __table_args__ = (Index(None, "team_id"),)


class VocodeAgent(Base):
    __tablename__ = "vocode_agent"

    agent_id: Mapped[str] = mapped_column(ForeignKey("agent.id", ondelete="CASCADE"), primary_key=True)
    team_id: Mapped[str] = mapped_column(ForeignKey("team.id", ondelete="CASCADE"))
    voice: Mapped[dict[str, Any]]
    """The Vocode voice object as shown: ``{"id", "type", ...the voice's own fields}``."""
    actions: Mapped[list[dict[str, Any]]] = mapped_column(JSONType)
    """The Vocode action objects: ``[{"id", "type", "config"}]``."""
    webhook: Mapped[dict[str, Any] | None]
    """The Vocode webhook, for delivery of Vocode events:
    ``{"id": <uuid>, "url": str, "method": "POST" | "GET", "subscriptions": ["event_message", ...]}``."""
    created_at: Mapped[datetime]

    __table_args__ = (Index(None, "team_id"),)


class Carrier(Base):
    __tablename__ = "carrier"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    team_id: Mapped[str] = mapped_column(ForeignKey("team.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16))
    """``sip`` or ``twilio``."""
    config: Mapped[dict[str, Any]]
    """What is not secret: ``{"outbound": {...}, "inbound": {...}}`` (sip) or ``{"account_sid": ...}``."""
    outbound_password: Mapped[str | None] = mapped_column(SealedString())
    """SIP: the digest password answered to the carrier's 401/407 challenges."""
    inbound_password: Mapped[str | None] = mapped_column(SealedString())
    """SIP: the digest password callgate challenges the carrier's INVITEs with."""
    auth_token: Mapped[str | None] = mapped_column(SealedString())
    """Twilio: the account's auth token (signs webhooks, authenticates REST requests)."""
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]

    __table_args__ = (Index(None, "team_id", "created_at"),)
