"""Settings read from the environment: the Whisper models the server declares."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from callgate.config import MAX_WHISPER_MODELS, Settings, WhisperModel


def test_the_bundled_tiny_en_is_declared_with_no_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CALLGATE_WHISPER_MODELS", raising=False)
    monkeypatch.delenv("CALLGATE_WHISPER_DEFAULT_MODEL", raising=False)
    settings = Settings()
    assert settings.whisper_models == {"tiny.en": WhisperModel(path=None, compute_type="int8", cpu_threads=1)}
    assert settings.whisper_default_model == "tiny.en"


def test_whisper_models_are_declared_as_json(monkeypatch: pytest.MonkeyPatch) -> None:
    models = {
        "tiny.en": {},
        "base.en": {
            "path": "/models/base.en",
            "compute_type": "int8_float32",
            "cpu_threads": 2,
            "workers": 4,
        },
    }
    monkeypatch.setenv("CALLGATE_WHISPER_MODELS", json.dumps(models))
    monkeypatch.setenv("CALLGATE_WHISPER_DEFAULT_MODEL", "base.en")
    settings = Settings()
    assert settings.whisper_models["base.en"] == WhisperModel(
        path=Path("/models/base.en"), compute_type="int8_float32", cpu_threads=2, workers=4
    )
    assert list(settings.whisper_models) == ["tiny.en", "base.en"]
    assert settings.whisper_default_model == "base.en"


@pytest.mark.parametrize(
    ("models", "default", "error"),
    [
        ({"base.en": {"path": "/m"}}, "tiny.en", "CALLGATE_WHISPER_DEFAULT_MODEL 'tiny.en' is not one of"),
        ({}, "tiny.en", "must declare 1 to"),
        ({f"m{i}": {} for i in range(MAX_WHISPER_MODELS + 1)}, "m0", "must declare 1 to"),
        ({"../etc": {}}, "../etc", "Whisper model name '../etc'"),
        ({"tiny.en": {"cpu_threads": 64}}, "tiny.en", "cpu_threads"),
        ({"tiny.en": {"num_workers": 4}}, "tiny.en", "num_workers"),
        ({"tiny.en": {"workers": 0}}, "tiny.en", "workers"),
        ({"tiny.en": {"compute_type": "float16"}}, "tiny.en", "compute_type"),
    ],
)
def test_bad_whisper_models_stop_the_server_at_start(
    monkeypatch: pytest.MonkeyPatch, models: dict[str, object], default: str, error: str
) -> None:
    monkeypatch.setenv("CALLGATE_WHISPER_MODELS", json.dumps(models))
    monkeypatch.setenv("CALLGATE_WHISPER_DEFAULT_MODEL", default)
    with pytest.raises(ValidationError, match=error.replace(".", r"\.")):
        Settings()
