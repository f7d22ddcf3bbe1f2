"""Build engines from an agent's settings: the one place that knows vendor names.

Settings are small dicts, e.g. ``{"engine": "whisper"}``, ``{"engine": "espeak", "voice": "en-us"}``,
``{"engine": "openai", "base_url": "http://127.0.0.1:11434/v1", "model": "llama3.2",
"api_key_env": "OLLAMA_KEY"}`` (validated by :mod:`callgate.providers.settings`). A missing
``engine`` means the embedded default: Silero VAD, Whisper STT, Piper TTS if it is installed, else
espeak-ng. Engine modules are imported only when built, so GPL engines stay unloaded unless an
agent (or the default) uses them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, SecretStr

from callgate.errors import CallgateError, ConfigError, ProviderUnavailable
from callgate.metrics import Metrics
from callgate.pipeline.interfaces import LLM, STT, TTS, VAD, EndOfTurnModel
from callgate.providers.fallback import Candidate
from callgate.providers.settings import (
    AnthropicSettings,
    CartesiaSettings,
    DeepgramSettings,
    ElevenLabsSettings,
    EspeakSettings,
    OpenAISettings,
    OpenAISTTSettings,
    OpenAITTSSettings,
    PiperSettings,
    PocketsphinxSettings,
    Role,
    SileroSettings,
    Stage,
    WhisperSettings,
    available_engines,
    default_engine,
    stage,
    stored_engine_settings,
    validate_engine_settings,
    whisper_model,
)
from callgate.providers.tts_cache import AudioCache, CachedTTS

__all__ = ["EngineRegistry", "WarmUp", "available_engines", "default_engine", "validate_engine_settings"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class WarmUp:
    role: str
    engine: str | None
    ok: bool
    seconds: float
    detail: str = ""


Factory = Callable[[Any], Any]


@dataclass(frozen=True, slots=True)
class BuildContext:
    """What an engine is built with beyond its settings: its resolved key and the agent's language."""

    api_key: SecretStr | None = None
    language: str = "en"


CloudFactory = Callable[[Any, BuildContext], Any]


class EngineRegistry:
    """Builds (and caches) engines for agents. One per process, created where the event loop runs.

    Engines are shared by all calls that use the same settings (they hold no per-call state; per-call
    state lives in VAD/STT streams and agent engines). ``defaults`` are merged under every agent's
    settings per role (e.g. a server-wide LLM). ``register()`` adds engines such as test fakes.
    Settings are read as stored (:func:`~callgate.providers.settings.stored_engine_settings`): an agent
    saved by an older version still runs. ``metrics``: the node's, for the embedded STT's figures.
    """

    def __init__(
        self,
        *,
        defaults: Mapping[Role, Mapping[str, Any]] | None = None,
        tts_cache_bytes: int = 0,
        metrics: Metrics | None = None,
    ) -> None:
        self._defaults = {role: dict(value) for role, value in (defaults or {}).items()}
        self._metrics = metrics
        self.tts_cache = AudioCache(tts_cache_bytes) if tts_cache_bytes > 0 else None
        """Finished sentences of every voice (see :mod:`callgate.providers.tts_cache`); None: off."""
        self._factories: dict[tuple[str, str], CloudFactory] = {
            ("vad", "silero"): _local(_silero),
            ("stt", "whisper"): _local(self._whisper),
            ("stt", "pocketsphinx"): _local(_pocketsphinx),
            ("stt", "deepgram"): _deepgram,
            ("stt", "openai"): _openai_stt,
            ("tts", "piper"): _local(_piper),
            ("tts", "espeak"): _local(_espeak),
            ("tts", "elevenlabs"): _elevenlabs,
            ("tts", "cartesia"): _cartesia,
            ("tts", "openai"): _openai_tts,
            ("llm", "openai"): _openai,
            ("llm", "anthropic"): _anthropic,
        }
        self._cache: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()

    def _whisper(self, s: WhisperSettings) -> STT:
        from callgate.providers.whisper import WhisperSTT

        name, model = whisper_model(s.model)
        return WhisperSTT(
            model_path=str(model.path) if model.path is not None else None,
            compute_type=model.compute_type,
            cpu_threads=model.cpu_threads,
            num_workers=model.workers,
            beam_size=s.beam_size,
            retry_window_s=s.retry_window_s,
            observe=self._metrics.stt_observer("whisper", name) if self._metrics is not None else None,
        )

    def register(self, role: Role, engine: str, factory: Factory) -> None:
        """Use ``factory(settings_model)`` for ``{"engine": engine}`` (e.g. ``"fake"`` in tests)."""
        self._factories[(role, engine)] = _local(factory)

    def settings(self, role: Role, settings: Mapping[str, Any] | None) -> BaseModel:
        """The primary engine's validated settings (``fallback`` engines are validated, not returned)."""
        merged = {**self._defaults.get(role, {}), **stored_engine_settings(role, settings)}
        return validate_engine_settings(role, merged)

    def stage(self, role: Role, settings: Mapping[str, Any] | None) -> Stage:
        """The stage's engines in order (the server's defaults under the primary only)."""
        merged = {**self._defaults.get(role, {}), **stored_engine_settings(role, settings)}
        return stage(role, merged)

    def candidates(
        self,
        role: Role,
        settings: Mapping[str, Any] | None,
        *,
        credentials: Mapping[str, SecretStr] | None = None,
        language: str = "en",
    ) -> list[Candidate[Any]]:
        """Every engine of the stage, built (or why it could not be), for :mod:`~.fallback`."""
        out: list[Candidate[Any]] = []
        for engine_settings in self.stage(role, settings).engines:
            name = str(engine_settings.get("engine") or default_engine(role) or "?")
            try:
                built = self._get(
                    role, engine_settings, credentials=credentials, language=language, merged=True
                )
            except CallgateError as exc:
                log.warning("cannot build the %s engine %s: %s", role, name, exc.detail)
                out.append(Candidate(name=name, engine=None, error=exc.detail))
                continue
            out.append(Candidate(name=name, engine=built))
        return out

    def _get(
        self,
        role: Role,
        settings: Mapping[str, Any] | None,
        *,
        credentials: Mapping[str, SecretStr] | None = None,
        language: str = "en",
        merged: bool = False,
    ) -> Any:
        # A stage's engines come merged already (:meth:`candidates`); a direct call gets the defaults.
        model = validate_engine_settings(role, settings) if merged else self.settings(role, settings)
        engine = str(getattr(model, "engine", ""))
        context = BuildContext(api_key=_api_key(model, credentials or {}), language=language)
        secret = context.api_key.get_secret_value() if context.api_key else ""
        fingerprint = hashlib.sha256(secret.encode()).hexdigest()[:16] if secret else ""
        key = (role, json.dumps([model.model_dump(mode="json"), fingerprint, language], sort_keys=True))
        with self._lock:
            if key in self._cache:
                return self._cache[key]
        factory = self._factories.get((role, engine))
        if factory is None:
            raise ConfigError(f"no {role} engine named {engine!r} is registered")
        built = factory(model, context)
        if role == "tts" and self.tts_cache is not None:
            built = CachedTTS(built, cache=self.tts_cache, voice=key[1])
        with self._lock:
            return self._cache.setdefault(key, built)

    def build(
        self,
        role: Role,
        settings: Mapping[str, Any] | None,
        *,
        credentials: Mapping[str, SecretStr] | None = None,
        language: str = "en",
    ) -> Any:
        """The stage's primary engine of ``role`` (cached)."""
        return self._get(role, settings, credentials=credentials, language=language)

    def vad(self, settings: Mapping[str, Any] | None = None) -> VAD:
        vad: VAD = self._get("vad", settings)
        return vad

    def stt(
        self, settings: Mapping[str, Any] | None = None, *, credentials: Mapping[str, SecretStr] | None = None
    ) -> STT:
        """The stage's primary STT engine (see :meth:`candidates` for all of them)."""
        stt: STT = self._get("stt", settings, credentials=credentials)
        return stt

    def tts(
        self,
        settings: Mapping[str, Any] | None = None,
        *,
        credentials: Mapping[str, SecretStr] | None = None,
        language: str = "en",
    ) -> TTS:
        tts: TTS = self._get("tts", settings, credentials=credentials, language=language)
        return tts

    def end_of_turn(self) -> EndOfTurnModel | None:
        """The process's end-of-turn model (Smart Turn v3), or None with a logged note when it is not
        installed: semantic turn detection then falls back to silence, never fails the call."""
        with self._lock:
            if ("turn", "smart_turn") in self._cache:
                model: EndOfTurnModel | None = self._cache[("turn", "smart_turn")]
                return model
        try:
            from callgate.providers.smart_turn import SmartTurn

            model = SmartTurn()
        except ProviderUnavailable as exc:
            log.warning("no end-of-turn model (%s): semantic turn detection uses silence only", exc)
            model = None
        with self._lock:
            cached: EndOfTurnModel | None = self._cache.setdefault(("turn", "smart_turn"), model)
            return cached

    def llm(
        self, settings: Mapping[str, Any] | None = None, *, credentials: Mapping[str, SecretStr] | None = None
    ) -> LLM:
        """The LLM for prompt agents; raises ProviderUnavailable if none is configured."""
        llm: LLM = self._get("llm", settings, credentials=credentials)
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
            if engine is not None and hasattr(engine, "aclose"):
                await engine.aclose()


# --------------------------------------------------------------------------- factories (lazy imports)


def _local(factory: Factory) -> CloudFactory:
    """An engine that needs no key (embedded engines, test fakes): built from its settings alone."""
    return lambda model, _context: factory(model)


def _api_key(model: BaseModel, credentials: Mapping[str, SecretStr]) -> SecretStr | None:
    """The key of a cloud engine: its provider credential, else its environment variable, else none."""
    credential_id = getattr(model, "credential_id", None)
    if credential_id:
        key = credentials.get(credential_id)
        if key is None:
            raise ConfigError(
                f"provider credential {credential_id} is not available (deleted, or another team's)"
            )
        return key
    env = getattr(model, "api_key_env", None)
    if env:
        value = os.environ.get(env)
        if not value:
            raise ConfigError(
                f"environment variable {env} (the {getattr(model, 'engine', '')} key) is not set"
            )
        return SecretStr(value)
    return None


def _silero(s: SileroSettings) -> VAD:
    from callgate.providers.silero import SileroVAD

    return SileroVAD(sample_rate=s.sample_rate, quiet_gate_db=s.quiet_gate_db)


def _pocketsphinx(_: PocketsphinxSettings) -> STT:
    from callgate.providers.pocketsphinx import PocketsphinxSTT

    return PocketsphinxSTT()


def _piper(s: PiperSettings) -> TTS:
    from callgate.providers.piper import PiperTTS

    return PiperTTS(speaker_id=s.speaker_id, length_scale=s.length_scale)  # "joe" is the only voice


def _espeak(s: EspeakSettings) -> TTS:
    from callgate.providers.espeak import EspeakTTS

    return EspeakTTS(voice=s.voice, rate=s.rate, pitch=s.pitch)


def _openai(s: OpenAISettings, c: BuildContext) -> LLM:
    from callgate.providers.openai import OpenAILLM

    return OpenAILLM(
        model=s.model,
        base_url=s.base_url,
        api_key=c.api_key,
        timeout=s.timeout,
        temperature=s.temperature,
        max_tokens=s.max_tokens,
    )


def _anthropic(s: AnthropicSettings, c: BuildContext) -> LLM:
    from callgate.providers.anthropic import AnthropicLLM

    return AnthropicLLM(
        model=s.model,
        api_key=c.api_key,
        base_url=s.base_url,
        timeout=s.timeout,
        max_tokens=s.max_tokens,
        temperature=s.temperature,
    )


def _deepgram(s: DeepgramSettings, c: BuildContext) -> STT:
    from callgate.providers.deepgram import DeepgramSTT

    return DeepgramSTT(
        api_key=c.api_key,
        model=s.model,
        base_url=s.base_url,
        endpointing_ms=s.endpointing_ms,
        smart_format=s.smart_format,
        timeout=s.timeout,
    )


def _openai_stt(s: OpenAISTTSettings, c: BuildContext) -> STT:
    from callgate.providers.openai import OpenAISTT

    return OpenAISTT(
        model=s.model, base_url=s.base_url, api_key=c.api_key, timeout=s.timeout, prompt=s.prompt
    )


def _elevenlabs(s: ElevenLabsSettings, c: BuildContext) -> TTS:
    from callgate.providers.elevenlabs import ElevenLabsTTS

    return ElevenLabsTTS(
        api_key=c.api_key,
        voice_id=s.voice_id,
        model_id=s.model_id,
        base_url=s.base_url,
        sample_rate=s.sample_rate,
        language=c.language,
        timeout=s.timeout,
        stability=s.stability,
        similarity_boost=s.similarity_boost,
    )


def _cartesia(s: CartesiaSettings, c: BuildContext) -> TTS:
    from callgate.providers.cartesia import CartesiaTTS

    return CartesiaTTS(
        api_key=c.api_key,
        voice_id=s.voice_id,
        model_id=s.model_id,
        base_url=s.base_url,
        api_version=s.api_version,
        sample_rate=s.sample_rate,
        language=c.language,
        timeout=s.timeout,
    )


def _openai_tts(s: OpenAITTSSettings, c: BuildContext) -> TTS:
    from callgate.providers.openai import OpenAITTS

    return OpenAITTS(
        model=s.model,
        voice=s.voice,
        base_url=s.base_url,
        api_key=c.api_key,
        timeout=s.timeout,
        speed=s.speed,
        sample_rate=s.sample_rate,
    )
