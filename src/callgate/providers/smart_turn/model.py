"""Smart Turn v3 on one onnxruntime session per process, run on a worker thread in batches across calls.

A call asks at a pause (:meth:`SmartTurn.predict` with the utterance so far); the worker takes every
question pending at that moment, computes their log-mel features, runs them as one inference and hands
each probability back to the event loop that asked. As with Silero VAD
(:mod:`callgate.providers.silero.batcher`), onnxruntime releases the GIL while it runs, so the event loop
keeps its core; one thread and one session per process, never a pool per call.

The model (``smart-turn-v3.2-cpu.onnx``, 8.7 MB, int8, BSD-2-Clause) ships inside the ``pipecat-ai``
wheel. callgate locates the file through the installed distribution's metadata and never imports pipecat.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from callgate.errors import ProviderError, ProviderUnavailable
from callgate.pipeline.interfaces import EndOfTurnCapabilities, EndOfTurnModel
from callgate.providers._common import require
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
    ort = require("onnxruntime", extra="turns")
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own untyped errors
        raise ProviderUnavailable(f"cannot load the Smart Turn model {path}: {exc}") from exc
    inputs = {i.name: i.shape for i in session.get_inputs()}
    if list(inputs) != ["input_features"] or inputs["input_features"][1:] != [80, 800]:
        raise ProviderUnavailable(f"{path} is not Smart Turn v3 (inputs {inputs})")
    return session


@dataclass(slots=True, eq=False)
class _Question:
    pcm16: bytes
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[float]


class _Batcher:
    def __init__(self, path: Path) -> None:
        self._session = _load_session(path)
        self._lock = threading.Lock()
        self._pending: list[_Question] = []
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self.batches = 0
        self.questions = 0

    def run_blocking(self, clips: list[bytes]) -> list[float]:
        """One inference on the calling thread: each clip PCM16 at 16 kHz, its last 8 s used."""
        features = np.stack(
            [log_mel(np.frombuffer(clip, dtype="<i2").astype(np.float32) / 32768.0) for clip in clips]
        )
        (probabilities,) = self._session.run(None, {"input_features": features})
        return [float(p) for p in probabilities[:, 0]]

    def submit(self, pcm16: bytes) -> asyncio.Future[float]:
        loop = asyncio.get_running_loop()
        question = _Question(pcm16, loop, loop.create_future())
        with self._lock:
            self._pending.append(question)
            if self._thread is None:
                self._stopping = False
                self._thread = threading.Thread(target=self._work, name="callgate-turn", daemon=True)
                self._thread.start()
            self._wake.set()
        return question.future

    def stop(self) -> None:
        """Answer the questions already asked, then stop the worker (a later one restarts it)."""
        with self._lock:
            thread = self._thread
            if thread is None:
                return
            self._stopping = True
            self._wake.set()
        thread.join()

    def _work(self) -> None:
        while True:
            self._wake.wait()
            with self._lock:
                batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
                if not self._pending:
                    self._wake.clear()
                if not batch and self._stopping:
                    self._thread = None
                    return
            batch = [q for q in batch if not q.future.cancelled()]  # the caller went on speaking
            if not batch:
                continue
            outcome: list[float] | BaseException
            try:
                outcome = self.run_blocking([q.pcm16 for q in batch])
            except Exception as exc:  # never kill the worker: fail these questions instead
                log.exception("Smart Turn inference failed for %d questions", len(batch))
                outcome = ProviderError(f"Smart Turn inference failed: {exc}")
                outcome.__cause__ = exc
            self.batches += 1
            self.questions += len(batch)
            for i, question in enumerate(batch):
                result = outcome if isinstance(outcome, BaseException) else outcome[i]
                with contextlib.suppress(RuntimeError):  # that loop is closed: nobody waits
                    question.loop.call_soon_threadsafe(_deliver, question.future, result)


def _deliver(future: asyncio.Future[float], result: float | BaseException) -> None:
    if future.done():
        return
    if isinstance(result, BaseException):
        future.set_exception(result)
    else:
        future.set_result(result)


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
        future = self._batcher.submit(pcm16)
        try:
            return await future
        except asyncio.CancelledError:
            future.cancel()
            raise

    def warm_up(self) -> None:
        """Run one inference now (blocking), so the first call does not pay for onnxruntime's set-up."""
        self._batcher.run_blocking([bytes(SAMPLE_RATE * 2)])

    async def aclose(self) -> None:
        await asyncio.to_thread(self._batcher.stop)
