"""ORM models. API schemas are separate classes (``callgate.api.schemas``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    Boolean,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from callgate.store.types import JSONType, UTCDateTime

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSONType, list[str]: JSONType}


def table(model: type[Base]) -> Table:
    """A model's table, for Core statements (hot paths that skip the ORM's unit of work)."""
    return cast(Table, model.__table__)


class Team(Base):
    __tablename__ = "team"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    max_live_calls: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime]


class ApiKey(Base):
    __tablename__ = "api_key"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    team_id: Mapped[str] = mapped_column(ForeignKey("team.id", ondelete="CASCADE"), index=True)
    type: Mapped[str] = mapped_column(String(16))
    name: Mapped[str | None] = mapped_column(String(200))
    lookup_id: Mapped[str] = mapped_column(String(32), unique=True)
    secret_hash: Mapped[str] = mapped_column(String(64))
    allowed_origins: Mapped[list[str]]
    agent_ids: Mapped[list[str]]
    rate_limit: Mapped[str] = mapped_column(String(64))
    token_ttl_s: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime]
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class Agent(Base):
    __tablename__ = "agent"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    team_id: Mapped[str] = mapped_column(ForeignKey("team.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    prompt: Mapped[str | None] = mapped_column(Text)
    flow: Mapped[dict[str, Any] | None]
    initial_message: Mapped[str | None] = mapped_column(Text)
    variables: Mapped[dict[str, Any]]
    voice: Mapped[str | None] = mapped_column(String(200))
    language: Mapped[str | None] = mapped_column(String(35))
    """BCP 47 tag (``en``, ``de-DE``) the agent speaks and listens in; None: English (migration 0011)."""
    stt: Mapped[dict[str, Any]]
    llm: Mapped[dict[str, Any]]
    tts: Mapped[dict[str, Any]]
    turn_detection: Mapped[dict[str, Any]] = mapped_column(server_default="{}")
    tools: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, server_default="[]")
    """Validated tool definitions; ``http`` header values sealed (``callgate.domain.tools``)."""
    max_duration_s: Mapped[int] = mapped_column(Integer)
    silence_timeout_s: Mapped[int] = mapped_column(Integer)
    webhook_url: Mapped[str | None] = mapped_column(String(2048))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    deleted_at: Mapped[datetime | None]

    __table_args__ = (Index(None, "team_id", "created_at"),)


class Contact(Base):
    __tablename__ = "contact"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    team_id: Mapped[str] = mapped_column(ForeignKey("team.id", ondelete="CASCADE"))
    name: Mapped[str | None] = mapped_column(String(200))
    phone: Mapped[str | None] = mapped_column(String(32))
    email: Mapped[str | None] = mapped_column(String(320))
    attributes: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]

    __table_args__ = (Index(None, "team_id", "created_at"),)


class PhoneNumber(Base):
    __tablename__ = "phone_number"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    team_id: Mapped[str] = mapped_column(ForeignKey("team.id", ondelete="CASCADE"))
    number: Mapped[str] = mapped_column(String(32), unique=True)
    agent_id: Mapped[str | None] = mapped_column(ForeignKey("agent.id", ondelete="SET NULL"))
    label: Mapped[str | None] = mapped_column(String(200))
    carrier_id: Mapped[str | None] = mapped_column(ForeignKey("carrier.id", ondelete="SET NULL"), index=True)
    """The carrier (``store.models_telephony.Carrier``) the number is reached through."""
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]

    __table_args__ = (Index(None, "team_id", "created_at"),)


class Call(Base):
    __tablename__ = "call"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    team_id: Mapped[str] = mapped_column(ForeignKey("team.id", ondelete="CASCADE"))
    agent_id: Mapped[str] = mapped_column(ForeignKey("agent.id"))
    contact_id: Mapped[str | None] = mapped_column(ForeignKey("contact.id", ondelete="SET NULL"))
    kind: Mapped[str] = mapped_column(String(16))
    transport: Mapped[str] = mapped_column(String(16))
    mode: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    end_reason: Mapped[str | None] = mapped_column(String(32))
    dialect: Mapped[str | None] = mapped_column(String(16))
    variables: Mapped[dict[str, Any]]
    call_metadata: Mapped[dict[str, Any]] = mapped_column("metadata", JSONType)
    data: Mapped[dict[str, Any]]
    recording_path: Mapped[str | None] = mapped_column(String(1024))
    sip_auth: Mapped[dict[str, Any] | None]
    """Per-call SIP digest credentials (HA1 hashes only, never the password)."""
    webhook: Mapped[dict[str, Any] | None]
    """Per-call webhook destination (``callgate.webhooks.targets.CallWebhook``), set at creation."""
    analysis: Mapped[dict[str, Any] | None]
    """Post-call analysis (summary, extracted data), written once the call is analysed."""
    node_id: Mapped[str | None] = mapped_column(String(40))
    """The node holding the call's session (set when a caller joins); see :class:`NodeLease`."""
    created_at: Mapped[datetime]
    join_deadline: Mapped[datetime]
    connected_at: Mapped[datetime | None]
    started_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]

    __table_args__ = (
        Index(None, "team_id", "created_at"),
        Index(None, "team_id", "status"),
        Index(None, "status", "join_deadline"),
    )


class CallEvent(Base):
    __tablename__ = "call_event"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    call_id: Mapped[str] = mapped_column(ForeignKey("call.id", ondelete="CASCADE"), index=True)
    type: Mapped[str] = mapped_column(String(40))
    from_status: Mapped[str | None] = mapped_column(String(16))
    to_status: Mapped[str | None] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(String(32))
    data: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]


class TranscriptTurn(Base):
    __tablename__ = "transcript_turn"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    call_id: Mapped[str] = mapped_column(ForeignKey("call.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)
    role: Mapped[str] = mapped_column(String(16))
    text: Mapped[str] = mapped_column(Text)
    interrupted: Mapped[bool] = mapped_column(Boolean)
    started_at: Mapped[datetime]
    ended_at: Mapped[datetime]
    endpointing_ms: Mapped[int | None] = mapped_column(Integer)
    stt_ms: Mapped[int | None] = mapped_column(Integer)
    agent_first_token_ms: Mapped[int | None] = mapped_column(Integer)
    tts_first_audio_ms: Mapped[int | None] = mapped_column(Integer)
    total_ms: Mapped[int | None] = mapped_column(Integer)
    tool: Mapped[dict[str, Any] | None]
    """Role ``tool`` only: ``{tool_call_id, name, kind, arguments, result, error, latency_ms}``."""
    barge_ins: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONType, nullable=True)
    """Role ``agent`` only, when the caller's sound held it: ``[{outcome, reason, held_ms, words}]``. An
    agent turn with no ``text`` is a reply cut off before the caller heard any of it, kept for this."""

    @property
    def spoken(self) -> bool:
        """Words somebody said: not a tool call, nor a reply the caller never heard (see ``barge_ins``)."""
        return self.role != "tool" and bool(self.text)

    __table_args__ = (UniqueConstraint("call_id", "seq"),)


class NodeLease(Base):
    """A running node's lease on the calls it holds: renewed while the node lives. A live call whose
    node's lease has lapsed is ended ``node_lost`` by any node (``callgate.domain.nodes``)."""

    __tablename__ = "node_lease"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    started_at: Mapped[datetime]
    renewed_at: Mapped[datetime]
    expires_at: Mapped[datetime] = mapped_column(index=True)


class UsedToken(Base):
    """Single-use call tokens: a row per consumed token id (when Redis is not configured)."""

    __tablename__ = "used_token"

    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    call_id: Mapped[str] = mapped_column(String(40))
    expires_at: Mapped[datetime] = mapped_column(index=True)
    used_at: Mapped[datetime]
