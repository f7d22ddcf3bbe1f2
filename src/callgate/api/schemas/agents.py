"""Agent schemas: AgentCreate, AgentUpdate, AgentPublic."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Self

from pydantic import AnyHttpUrl, Field, model_validator

from callgate.api.schemas.common import Name, Public, Strict, Variables
from callgate.errors import ValidationFailed
from callgate.flows.schema import validate_flow
from callgate.providers.registry import default_engine, validate_engine_settings
from callgate.providers.settings import Role

EngineSettings = dict[str, Any]


class TurnDetection(Strict):
    """When the caller's turn starts and ends, and when they may cut the agent off. Every field is
    optional: a missing one takes the server's default."""

    end_of_turn_silence_ms: int | None = Field(
        default=None,
        strict=True,
        ge=100,
        le=5000,
        description="Silence after speech that ends the caller's turn (550).",
    )
    early_end_silence_ms: int | None = Field(
        default=None,
        strict=True,
        ge=0,
        le=5000,
        description=(
            "After this much silence the turn is transcribed, and it ends at once if the words are a "
            "finished sentence; 0 turns this off (250)."
        ),
    )
    vad_threshold: float | None = Field(
        default=None,
        strict=True,
        gt=0.0,
        le=1.0,
        description="Speech probability that counts as speech (0.5).",
    )
    min_speech_ms: int | None = Field(
        default=None, strict=True, ge=20, le=2000, description="Shorter sounds never start a turn (100)."
    )
    allow_interruptions: bool | None = Field(
        default=None, strict=True, description="The caller may barge in (true)."
    )
    interruption_min_speech_ms: int | None = Field(
        default=None, strict=True, ge=0, le=5000, description="Speech needed to cut the agent off (250)."
    )

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        early, end = self.early_end_silence_ms, self.end_of_turn_silence_ms
        if early and end is not None and early > end:
            raise ValueError("early_end_silence_ms cannot exceed end_of_turn_silence_ms")
        return self

    def stored(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


class AgentFields(Strict):
    initial_message: str | None = Field(default=None, max_length=4000)
    variables: Variables = Field(default_factory=dict)
    voice: str | None = Field(default=None, max_length=200)
    stt: EngineSettings = Field(
        default_factory=dict, description='STT engine settings, e.g. {"engine": "whisper"}'
    )
    llm: EngineSettings = Field(
        default_factory=dict,
        description='LLM settings (prompt agents): {"engine": "openai", "base_url", "model", "api_key_env"}',
    )
    tts: EngineSettings = Field(
        default_factory=dict, description='TTS engine settings, e.g. {"engine": "piper"}'
    )
    turn_detection: TurnDetection = Field(default_factory=TurnDetection)
    max_duration_s: int = Field(default=1800, strict=True, ge=10, le=14400)
    silence_timeout_s: int = Field(default=60, strict=True, ge=5, le=3600)
    webhook_url: AnyHttpUrl | None = None


def _check(role: Role, settings: Any, *, at: list[str]) -> None:
    if not isinstance(settings, dict):
        raise ValidationFailed(
            f"invalid {role} settings",
            errors=[{"loc": at, "msg": "Input should be an object", "type": "dict_type"}],
        )
    if "engine" not in settings and default_engine(role) is None:
        # Settings without an engine name the default one; with none installed (never for the LLM) the
        # request is what is wrong, a 422, not an outage (503).
        raise ValidationFailed(
            f"invalid {role} settings",
            errors=[
                {"loc": [*at, "engine"], "msg": f"give `engine`: no default {role} engine", "type": "missing"}
            ],
        )
    validate_engine_settings(role, settings)


def check_engines(values: dict[str, Any]) -> None:
    """Engine settings are checked when given; ``{}`` means the embedded default."""
    roles: tuple[Role, ...] = ("stt", "llm", "tts")
    for role in roles:
        settings = values.get(role)
        if settings:
            engine_settings = {k: v for k, v in settings.items() if not (role == "stt" and k == "vad")}
            if engine_settings:
                _check(role, engine_settings, at=[role])
            if role == "stt" and settings.get("vad"):
                _check("vad", settings["vad"], at=["stt", "vad"])


class AgentCreate(AgentFields):
    name: Name
    prompt: str | None = Field(default=None, min_length=1, max_length=100_000)
    flow: dict[str, Any] | None = Field(
        default=None, description="A scripted conversation (see docs/flows.md)."
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        if (self.prompt is None) == (self.flow is None):
            raise ValueError("give exactly one of `prompt` or `flow`")
        if self.flow is not None:
            # Raises ValidationFailed with errors located under `flow`.
            validate_flow(self.flow, known_variables=self.variables)
        check_engines({"stt": self.stt, "llm": self.llm, "tts": self.tts})
        return self


class AgentUpdate(Strict):
    """Only the fields given change; send `null` to clear an optional field."""

    name: Name | None = None
    prompt: str | None = Field(default=None, min_length=1, max_length=100_000)
    flow: dict[str, Any] | None = None
    initial_message: str | None = Field(default=None, max_length=4000)
    variables: Variables | None = None
    voice: str | None = Field(default=None, max_length=200)
    stt: EngineSettings | None = None
    llm: EngineSettings | None = None
    tts: EngineSettings | None = None
    turn_detection: TurnDetection | None = None
    max_duration_s: int | None = Field(default=None, strict=True, ge=10, le=14400)
    silence_timeout_s: int | None = Field(default=None, strict=True, ge=5, le=3600)
    webhook_url: AnyHttpUrl | None = None

    def changes(self) -> dict[str, Any]:
        out = self.model_dump(mode="json", exclude_unset=True)
        if self.turn_detection is not None:
            out["turn_detection"] = self.turn_detection.stored()
        check_engines(out)
        required_fields = (
            "name", "variables", "stt", "llm", "tts", "turn_detection", "max_duration_s", "silence_timeout_s",
        )  # fmt: skip
        for required in required_fields:
            if required in out and out[required] is None:
                raise ValueError(f"`{required}` cannot be null")
        return out


class AgentPublic(Public):
    id: str
    name: str
    prompt: str | None
    flow: dict[str, Any] | None
    initial_message: str | None
    variables: dict[str, Any]
    voice: str | None
    stt: dict[str, Any]
    llm: dict[str, Any]
    tts: dict[str, Any]
    turn_detection: dict[str, Any]
    max_duration_s: int
    silence_timeout_s: int
    webhook_url: str | None
    created_at: datetime
    updated_at: datetime
