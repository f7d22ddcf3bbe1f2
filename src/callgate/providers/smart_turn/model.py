"""Smart Turn v3 on one onnxruntime session per process, run on a worker thread in batches across calls.

A call asks at a pause (:meth:`SmartTurn.predict` with the utterance so far); the model's
:class:`~callgate.providers._batching.BatchWorker` takes every question pending at that moment, computes
their log-mel features, runs them as one inference and hands each probability back to the event loop
that asked. As with Silero VAD
(:mod:`callgate.providers.silero.batcher`), onnxruntime releases the GIL while it runs, so the event loop
keeps its core; one thread and one session per process, never a pool per call.

The model (``smart-turn-v3.2-cpu.onnx``, 8.7 MB, int8, BSD-2-Clause) ships inside the ``pipecat-ai``
wheel. callgate locates the file through the installed distribution's metadata and never imports pipecat.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np

from callgate.errors import ProviderUnavailable
from callgate.pipeline.interfaces import EndOfTurnCapabilities, EndOfTurnModel
from callgate.providers._batching import BatchWorker
from callgate.providers._common import onnx_session
from callgate.providers.smart_turn.features import SAMPLE_RATE, SECONDS, log_mel

__all__ = ["SmartTurn", "model_path"]

log = logging.getLogger(__name__)

DISTRIBUTION = "pipecat-ai"
MODEL_FILE = "pipecat/audio/turn/smart_turn/data/smart-turn-v3.2-cpu.onnx"
MAX_BATCH = 16
"""Questions per inference at most (one costs tens of ms; a batch of 16 about 16 times that)."""


def model_path() -> Path:
    """The ONNX model inside the installed ``pipecat-ai`` distribution (not imported)."""
    try:
        dist = importlib.metadata.distribution(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError as exc:
        raise ProviderUnavailable(
            "the Smart Turn model is not installed; install it with: pip install 'callgate[turns]'"
        ) from exc
    path = Path(str(dist.locate_file(MODEL_FILE)))
    if not path.is_file():
        raise ProviderUnavailable(f"{DISTRIBUTION} {dist.version} has no {MODEL_FILE} (looked in {path})")
    return path


def _load_session(path: Path) -> Any:
    session = onnx_session(path, extra="turns", what="Smart Turn")
    inputs = {i.name: i.shape for i in session.get_inputs()}
    if list(inputs) != ["input_features"] or inputs["input_features"][1:] != [80, 800]:
        raise ProviderUnavailable(f"{path} is not Smart Turn v3 (inputs {inputs})")
    return session


class _Batcher:
    def __init__(self, path: Path) -> None:
        self._session = _load_session(path)
        self.worker: BatchWorker[bytes, float] = BatchWorker(
            self._run, name="callgate-turn", role="turn", max_batch=MAX_BATCH
        )

    def run_blocking(self, clips: list[bytes]) -> list[float]:
        """One inference on the calling thread: each clip PCM16 at 16 kHz, its last 8 s used."""
        features = np.stack(
            [log_mel(np.frombuffer(clip, dtype="<i2").astype(np.float32) / 32768.0) for clip in clips]
        )
        (probabilities,) = self._session.run(None, {"input_features": features})
        return [float(p) for p in probabilities[:, 0]]

    def _run(self, clips: list[bytes]) -> list[float]:
        return self.run_blocking(clips)


_shared: dict[Path, _Batcher] = {}
_shared_lock = threading.Lock()


class SmartTurn(EndOfTurnModel):
    """Smart Turn v3. Construction loads the shared model if needed (blocking, ~100 ms) and raises
    :class:`~callgate.errors.ProviderUnavailable` when it is not installed."""

    def __init__(self, path: Path | None = None) -> None:
        path = path or model_path()
        with _shared_lock:
            if path not in _shared:
                _shared[path] = _Batcher(path)
            self._batcher = _shared[path]
        self.capabilities = EndOfTurnCapabilities(sample_rate=SAMPLE_RATE, max_audio_ms=SECONDS * 1000)

    async def predict(self, pcm16: bytes) -> float:
        future = self._batcher.worker.submit(pcm16)
        try:
            return await future
        except asyncio.CancelledError:
            future.cancel()
            raise

    def warm_up(self) -> None:
        """Run one inference now (blocking), so the first call does not pay for onnxruntime's set-up."""
        self._batcher.run_blocking([bytes(SAMPLE_RATE * 2)])

    async def aclose(self) -> None:
        await asyncio.to_thread(self._batcher.worker.stop)
