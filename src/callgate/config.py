"""Settings, read once from the environment (prefix ``CALLGATE_``)."""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
from enum import StrEnum
from functools import cached_property
from pathlib import Path
from typing import Literal, Self
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

_INSECURE_SECRETS = {"", "changeme", "secret", "change-me"}
MAX_WHISPER_MODELS = 4
"""Whisper models a server may declare: each one loaded is memory and threads of every process."""
_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class Environment(StrEnum):
    DEVELOPMENT = "development"
    PRODUCTION = "production"


class IceServer(BaseModel):
    """One STUN or TURN server, in the browser's ``RTCIceServer`` shape (``urls`` may be one string)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    urls: list[str] = Field(min_length=1)
    username: str | None = None
    credential: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _one_url(cls, value: object) -> object:
        if isinstance(value, dict) and isinstance(value.get("urls"), str):
            return {**value, "urls": [value["urls"]]}
        return value

    @model_validator(mode="after")
    def _valid_urls(self) -> Self:
        for url in self.urls:
            scheme = url.split(":", 1)[0]
            if scheme not in ("stun", "stuns", "turn", "turns"):
                raise ValueError(f"ICE server URL {url!r} must start with stun:, stuns:, turn: or turns:")
            if scheme.startswith("turn") and (self.username is None or self.credential is None):
                raise ValueError(f"TURN server {url!r} needs a username and a credential")
        return self


class WhisperModel(BaseModel):
    """One Whisper model the server offers agents, by name (``CALLGATE_WHISPER_MODELS``). Where it is
    and what it costs are the operator's: agents only pick a name."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: Path | None = None
    """A CTranslate2 Whisper model directory (holding ``model.bin``); unset: the bundled tiny.en."""
    compute_type: Literal["int8", "int8_float32", "float32"] = "int8"
    cpu_threads: int = Field(default=1, ge=1, le=16)
    """Threads per transcription. One is the fastest for tiny.en (see ``providers/whisper/stt.py``); a
    larger model may gain from more."""
    workers: int = Field(default=2, ge=1, le=16)
    """Transcriptions run at once (CTranslate2 workers, each a lane of batched short windows): two keep
    a 2-core machine busy; more cores, more talkers, may want more."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CALLGATE_", extra="ignore", frozen=True)

    env: Environment = Environment.DEVELOPMENT
    data_dir: Path = Path("./data")
    database_url: str | None = None
    """SQLAlchemy async URL; default: SQLite file ``callgate.db`` under ``data_dir``."""
    redis_url: str | None = None
    secret_key: SecretStr | None = None
    previous_secret_keys: list[SecretStr] = Field(default_factory=list)
    """Former ``secret_key`` values, as a JSON list: webhook secrets sealed under them stay readable
    and are re-sealed under the current key at start (call tokens signed with them are not accepted)."""
    """Signs call tokens. Generated and persisted under ``data_dir`` in development."""
    public_url: str | None = None
    """Base URL callers reach this server at (``https://calls.example.com``); default: the request's."""

    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    http_header_timeout_s: float = Field(default=10.0, gt=0, le=300)
    """A request's headers must be complete this long after the connection (or the request's first byte)."""
    http_idle_timeout_s: float = Field(default=30.0, gt=0, le=3600)
    """The longest pause while a request body is being read."""
    max_connections_per_client: int = Field(default=512, ge=0)
    """Open HTTP and WebSocket connections one client address may hold (0: no cap). Above what one node
    serves (a few hundred calls), so that behind a reverse proxy, where every client shares the proxy's
    address, the cap only stops a flood. See ``server.py``."""
    join_deadline_s: int = Field(default=60, ge=5, le=3600)
    default_team_max_live_calls: int = Field(default=20, ge=1)
    sweep_interval_s: float = Field(default=5.0, gt=0)
    """How often a node fails calls nobody joined in time and ends calls whose node was lost."""
    node_lease_s: float = Field(default=15.0, ge=1)
    """A node's lease on its calls, renewed every third of it: a node gone this long (kill -9, a crash)
    has its live calls ended ``node_lost`` by any node within about ``node_lease_s + sweep_interval_s``."""
    drain_timeout_s: float = Field(default=30.0, ge=0)
    """On SIGTERM a node takes no new call (``/readyz`` 503) and lets live calls finish for this long,
    then ends the rest ``node_shutdown``."""
    max_sessions: int | None = Field(default=None, ge=1)
    """Live calls one node serves at most; further callers are told to try again (see admission.py).
    A node of several worker processes gives each worker its share."""
    workers: int = Field(default=1, ge=1)
    """Worker processes serving this node (set by ``callgate serve --workers N``)."""
    max_loop_lag_ms: int = Field(default=250, ge=0)
    """Event-loop lag above which a node refuses new callers (0: never)."""
    max_stt_wait_ms: int = Field(default=1000, ge=0)
    """How long the oldest utterance may wait for the embedded speech-to-text (smoothed) before a node
    refuses new callers (0: never): beyond it transcripts come late and the backlog grows."""
    max_stt_queue: int = Field(default=0, ge=0)
    """Utterances waiting for the embedded speech-to-text above which a node refuses new callers (0: no
    limit; the wait above is the better signal, as a batch takes many at once)."""
    tts_cache_mb: int = Field(default=64, ge=0, le=65536)
    """Memory for synthesised sentences replayed when said again (0: off); see providers/tts_cache.py."""
    key_cache_ttl_s: float = Field(default=5.0, ge=0)
    """How long a verified key stays cached in-process; revocation reaches other nodes within this."""
    ice_servers: list[IceServer] = Field(default_factory=list)
    """STUN/TURN servers for WebRTC, as JSON (``CALLGATE_ICE_SERVERS='[{"urls": "stun:stun.example.com"}]'``):
    handed to clients in the create-web-call answer and used by the server's own ICE agent."""
    webrtc_host_addresses: list[str] = Field(default_factory=list)
    """The IP addresses the server offers as its WebRTC host candidates, as JSON
    (``CALLGATE_WEBRTC_HOST_ADDRESSES='["127.0.0.1"]'``); default: every interface's but loopback
    (aioice's choice). Needed on a host with only loopback; also limits the offer to one interface."""
    rtp_ports: str = Field(default="10000-20000", pattern=r"^\d{1,5}-\d{1,5}$")
    """UDP ports for SIP trunks' RTP (even ports, RTCP on the next one), as ``LOW-HIGH``."""
    rtp_timeout_s: float = Field(default=30.0, gt=0, le=3600)
    """A SIP trunk call whose far end sends no RTP for this long (not while it holds the call) ends
    ``transport_lost``."""
    sip_listen: str | None = None
    """``HOST:PORT`` for SIP from carriers, over UDP and TCP (e.g. ``0.0.0.0:5060``); off when unset."""
    sip_public_address: str | None = None
    """The address carriers reach this node at (behind NAT), advertised in SIP Contact and SDP;
    default: the listening address."""
    recordings_url: str | None = None
    """Where finished call recordings are kept: unset or ``file:///path`` (this node's disk, default
    ``data_dir/recordings``), or ``s3://bucket/prefix`` (any S3-compatible service, so every node can
    serve every recording; needs the ``s3`` extra)."""
    s3_endpoint_url: str | None = None
    """The S3 service's URL for MinIO, Ceph, R2 … (``https://minio.internal:9000``); unset: AWS."""
    s3_region: str | None = None
    s3_access_key_id: str | None = None
    """With ``s3_secret_access_key``; both unset: boto3's usual chain (``AWS_*`` variables, instance role)."""
    s3_secret_access_key: SecretStr | None = None
    s3_timeout_s: float = Field(default=10.0, gt=0, le=300)
    """Connect and read timeout of one S3 request."""
    twilio_api_base: str = "https://api.twilio.com"
    """Where Twilio's REST API is (placing, hanging up and transferring Twilio calls); tests point it at
    a local fake."""
    twilio_ring_timeout_s: int = Field(default=30, ge=5, le=600)
    """How long an outbound Twilio call rings before it ends ``no_answer`` (Twilio's ``Timeout``)."""
    dashboard_session_idle_s: int = Field(default=8 * 3600, ge=60, le=30 * 86400)
    """A dashboard sign-in unused this long ends: the next page asks for the password again."""
    dashboard_session_max_s: int = Field(default=24 * 3600, ge=60, le=90 * 86400)
    """A dashboard sign-in ends this long after it started, however active (the absolute limit)."""
    log_level: str = "INFO"
    log_json: bool = True
    speech_warmup: bool = True
    """Load the embedded speech models at start rather than on the first call."""
    whisper_models: dict[str, WhisperModel] = Field(default_factory=lambda: {"tiny.en": WhisperModel()})
    """The Whisper models agents may pick by name (``"stt": {"engine": "whisper", "model": NAME}``), as a
    JSON object of name -> ``{"path", "compute_type", "cpu_threads"}``; replaces the default, which
    offers the bundled tiny.en (int8, one thread) as ``tiny.en``. At most ``MAX_WHISPER_MODELS``; a
    model is loaded when a call first uses it (the default one at start)."""
    whisper_default_model: str = "tiny.en"
    """The model of agents whose ``stt`` names none; one of ``whisper_models``."""

    webhooks_allow_private: bool = False
    """Let webhooks (and agents' other outbound requests) reach private, loopback and link-local
    addresses. For development and tests; cloud metadata addresses stay refused."""
    webhooks_allowed_networks: list[str] = Field(default_factory=list)
    """CIDR ranges outbound requests may reach even when private (e.g. ``["10.1.2.0/24"]``)."""
    webhooks_dispatch: bool = True
    """Run the webhook dispatcher and post-call analysis on this node."""
    webhooks_timeout_s: float = Field(default=10.0, gt=0, le=120)
    webhooks_max_attempts: int = Field(default=8, ge=1, le=50)
    webhooks_backoff_base_s: float = Field(default=5.0, gt=0)
    webhooks_backoff_max_s: float = Field(default=3600.0, gt=0)
    webhooks_poll_interval_s: float = Field(default=0.25, gt=0)
    analysis_concurrency: int = Field(default=4, ge=1, le=256)
    """Post-call analyses one node runs at once (each waits mostly on its LLM)."""
    webhooks_lease_s: float = Field(default=60.0, gt=0)
    """How long a node's claim on a delivery lasts; after a crash, the delivery waits this long."""

    @field_validator("whisper_models")
    @classmethod
    def _whisper_models(cls, value: dict[str, WhisperModel]) -> dict[str, WhisperModel]:
        if not 1 <= len(value) <= MAX_WHISPER_MODELS:
            raise ValueError(f"CALLGATE_WHISPER_MODELS must declare 1 to {MAX_WHISPER_MODELS} models")
        for name in value:
            if not _MODEL_NAME.match(name):
                raise ValueError(
                    f"Whisper model name {name!r}: letters, digits, '.', '_' and '-', at most 64 characters"
                )
        return value

    @model_validator(mode="after")
    def _whisper_default_is_declared(self) -> Self:
        if self.whisper_default_model not in self.whisper_models:
            raise ValueError(
                f"CALLGATE_WHISPER_DEFAULT_MODEL {self.whisper_default_model!r} is not one of "
                f"CALLGATE_WHISPER_MODELS ({', '.join(self.whisper_models)})"
            )
        return self

    @field_validator("rtp_ports")
    @classmethod
    def _port_range(cls, value: str) -> str:
        low, high = (int(p) for p in value.split("-"))
        if not 1024 <= low < high <= 65535:
            raise ValueError("CALLGATE_RTP_PORTS must be LOW-HIGH with 1024 <= LOW < HIGH <= 65535")
        return value

    @field_validator("sip_listen")
    @classmethod
    def _host_port(cls, value: str | None) -> str | None:
        if value is not None:
            host, sep, port = value.rpartition(":")
            if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
                raise ValueError("CALLGATE_SIP_LISTEN must be HOST:PORT, e.g. 0.0.0.0:5060")
            ipaddress.ip_address(host.strip("[]"))
        return value

    @field_validator("recordings_url")
    @classmethod
    def _recordings_url(cls, value: str | None) -> str | None:
        if value:
            parts = urlsplit(value)
            if parts.scheme == "s3" and parts.netloc:
                return value
            if parts.scheme == "file" and parts.path and not parts.netloc:
                return value
            raise ValueError("CALLGATE_RECORDINGS_URL must be s3://bucket[/prefix] or file:///absolute/path")
        return value or None

    @property
    def rtp_port_range(self) -> tuple[int, int]:
        low, high = self.rtp_ports.split("-")
        return int(low), int(high)

    @property
    def sip_listen_address(self) -> tuple[str, int] | None:
        if self.sip_listen is None:
            return None
        host, _, port = self.sip_listen.rpartition(":")
        return host.strip("[]"), int(port)

    @field_validator("webrtc_host_addresses")
    @classmethod
    def _ip_addresses(cls, value: list[str]) -> list[str]:
        return [str(ipaddress.ip_address(address)) for address in value]

    @model_validator(mode="after")
    def _refuse_insecure_production(self) -> Self:
        if self.env is Environment.PRODUCTION:
            key = self.secret_key.get_secret_value() if self.secret_key else ""
            if key.lower() in _INSECURE_SECRETS or len(key) < 32:
                raise ValueError(
                    "CALLGATE_SECRET_KEY must be set to at least 32 random characters in production"
                )
        return self

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'callgate.db').resolve()}"

    @cached_property
    def signing_key(self) -> str:
        """The token signing key; in development, generated once and kept in ``data_dir``."""
        if self.secret_key is not None and self.secret_key.get_secret_value():
            return self.secret_key.get_secret_value()
        path = self.data_dir / "secret_key"
        if path.exists():
            return path.read_text().strip()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        key = secrets.token_urlsafe(48)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(key)
        return key
