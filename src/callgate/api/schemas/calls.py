"""Web-call and call schemas."""

from __future__ import annotations

import json
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import AnyHttpUrl, Field, field_validator

from callgate.api.schemas.common import Metadata, Public, Strict, Variables

MAX_METADATA_BYTES = 16_384


class Transport(StrEnum):
    WEBSOCKET = "websocket"
    WEBRTC = "webrtc"
    SIP = "sip"


class Mode(StrEnum):
    AUDIO = "audio"
    TEXT = "text"
    AUDIO_TEXT = "audio_text"


class _WebCallFields(Strict):
    transport: Transport = Transport.WEBSOCKET
    mode: Mode = Mode.AUDIO
    variables: Variables = Field(default_factory=dict)
    metadata: Metadata = Field(default_factory=dict)

    @field_validator("metadata")
    @classmethod
    def _small(cls, value: dict[str, Any]) -> dict[str, Any]:
        if len(json.dumps(value)) > MAX_METADATA_BYTES:
            raise ValueError(f"metadata is limited to {MAX_METADATA_BYTES} bytes of JSON")
        return value


class WebCallCreate(_WebCallFields):
    """Created by your backend with a secret key."""

    agent_id: str = Field(min_length=1, max_length=64)
    contact_id: str | None = Field(default=None, max_length=64)
    webhook_url: AnyHttpUrl | None = Field(
        default=None, description="Also send this call's events here (signed with the team's secret)."
    )


class WebCallTokenCreate(_WebCallFields):
    """Created from a browser with a publishable key (or a shared key). No overrides are accepted."""

    agent_id: str | None = Field(
        default=None,
        max_length=64,
        description="Required for publishable keys; a shared key implies its agent.",
    )


class SipPublic(Public):
    ws_url: str
    sip_domain: str
    sip_username: str
    sip_password: str
    target: str
    headers: dict[str, str]


class IceServerPublic(Public):
    """The browser's ``RTCIceServer``: pass the list as ``new RTCPeerConnection({iceServers})``."""

    urls: list[str]
    username: str | None = None
    credential: str | None = None


class WebCallPublic(Public):
    id: str
    status: str
    agent_id: str
    transport: Transport
    mode: Mode
    created_at: datetime
    token: str = Field(description="Single-use call token, bound to this call and transport.")
    expires_at: datetime = Field(description="Join deadline: connect before this or the call fails.")
    websocket_url: str | None = Field(
        description="Open as is (the token rides in it) for transport=websocket."
    )
    webrtc_offer_url: str | None = Field(
        description="POST an SDP offer here, for transport=webrtc (the token rides in it, as clients "
        "such as pipecat's SmallWebRTC cannot add an Authorization header)."
    )
    sip: SipPublic | None = Field(description="Per-call SIP-over-WebSocket credentials, for transport=sip.")
    ice_servers: list[IceServerPublic] | None = Field(
        default=None,
        description="STUN/TURN servers for the RTCPeerConnection (``iceServers``), for webrtc and sip.",
    )


class ToolCallPublic(Public):
    tool_call_id: str
    name: str
    kind: str = Field(description="http, client, end_call, transfer_call, send_dtmf, wait (or unknown).")
    arguments: Any = Field(description="As the model gave them (its raw text when not JSON).")
    result: Any = Field(description="What the tool answered; null on an error.")
    error: str | None = Field(description="Why the tool failed, as the model was told.")
    latency_ms: int


class BargeInPublic(Public):
    outcome: str = Field(description="`resumed` (the agent went on where it stopped) or `interrupted`.")
    reason: str = Field(
        description="resumed: `noise`, `no_words`, `backchannel`, `slow_words` (the caller's words came "
        "too late to keep the agent waiting); interrupted: `long_speech`, `words`, "
        "`continued` (the caller went on with the turn this answered: answered again with all the "
        "words), `text` (a typed message), `turn` (a finished caller turn)."
    )
    held_ms: float | None = Field(description="How long the agent's audio was held before the decision.")
    words: str = Field(description="What the caller said over the agent, when STT heard words.")


class TurnPublic(Public):
    seq: int
    role: str = Field(description="user, agent or tool.")
    text: str = Field(
        description="What was said; for a tool call, the tool's name. Empty for an agent reply the caller "
        "cut off before hearing any of it (kept for its `barge_ins`: why the agent stopped)."
    )
    interrupted: bool
    started_at: datetime
    ended_at: datetime
    endpointing_ms: int | None
    stt_ms: int | None
    agent_first_token_ms: int | None
    tts_first_audio_ms: int | None
    total_ms: int | None
    tool: ToolCallPublic | None = Field(
        default=None, description="Role `tool`: the call, its arguments and its result or error."
    )
    barge_ins: list[BargeInPublic] = Field(
        default_factory=list,
        description="Role `agent`: each time the caller's sound held the agent, and what was decided.",
    )

    @field_validator("barge_ins", mode="before")
    @classmethod
    def _none_is_empty(cls, value: object) -> object:
        return [] if value is None else value


class LatencySummary(Public):
    turns: int = Field(description="Agent turns with a measured latency.")
    p50_ms: int | None
    p95_ms: int | None
    stages_p50_ms: dict[str, int | None]


class CallSummary(Public):
    id: str
    agent_id: str
    contact_id: str | None
    kind: str
    transport: str
    mode: str
    status: str
    end_reason: str | None
    variables: dict[str, Any]
    metadata: dict[str, Any]
    data: dict[str, Any]
    created_at: datetime
    join_deadline: datetime
    connected_at: datetime | None
    started_at: datetime | None
    ended_at: datetime | None
    duration_s: float | None


class PhoneSidePublic(Public):
    direction: str = Field(description="`outbound` (placed by callgate) or `inbound`.")
    from_number: str
    to_number: str


class CallPublic(CallSummary):
    phone: PhoneSidePublic | None = Field(
        default=None, description="A phone call's numbers (kind `phone`); null for web calls."
    )
    transcript: list[TurnPublic]
    latency: LatencySummary
    recording_url: str | None
    analysis: dict[str, Any] | None = Field(
        default=None,
        description="Post-call analysis once ready: status, summary, data (extracted), outcome, analyzed_at.",
    )


class CallEnd(Strict):
    reason: str | None = Field(default=None, max_length=200, description="Free text kept on the event.")
