"""Build engines from an agent's settings: the one place that knows vendor names.

Settings are small dicts, e.g. ``{"engine": "whisper"}``, ``{"engine": "espeak", "voice": "en-us"}``,
``{"engine": "openai", "base_url": "http://127.0.0.1:11434/v1", "model": "llama3.2",
"api_key_env": "OLLAMA_KEY"}`` (validated by :mod:`callgate.providers.settings`). A missing
``engine`` means the embedded default: Silero VAD, Whisper STT, Piper TTS if it is installed, else
espeak-ng. Engine modules are imported only when built, so GPL engines stay unloaded unless an
agent (or the default) uses them.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, SecretStr

from callgate.errors import ConfigError, ProviderUnavailable
from callgate.pipeline.interfaces import LLM, STT, TTS, VAD, EndOfTurnModel
from callgate.providers.settings import (
    EspeakSettings,
    OpenAISettings,
    PiperSettings,
    PocketsphinxSettings,
    Role,
    SileroSettings,
    WhisperSettings,
    available_engines,
    default_engine,
    validate_engine_settings,
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


class EngineRegistry:
    """Builds (and caches) engines for agents. One per process, created where the event loop runs.

    Engines are shared by all calls that use the same settings (they hold no per-call state; per-call
    state lives in VAD/STT streams and agent engines). ``defaults`` are merged under every agent's
    settings per role (e.g. a server-wide LLM). ``register()`` adds engines such as test fakes.
    """

    def __init__(
        self, *, defaults: Mapping[Role, Mapping[str, Any]] | None = None, tts_cache_bytes: int = 0
    ) -> None:
        self._defaults = {role: dict(value) for role, value in (defaults or {}).items()}
        self.tts_cache = AudioCache(tts_cache_bytes) if tts_cache_bytes > 0 else None
        """Finished sentences of every voice (see :mod:`callgate.providers.tts_cache`); None: off."""
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
        if role == "tts" and self.tts_cache is not None:
            built = CachedTTS(built, cache=self.tts_cache, voice=key[1])
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
            if engine is not None and hasattr(engine, "aclose"):
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
