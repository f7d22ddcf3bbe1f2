"""Helpers shared by the concrete engines: import guards, worker threads, PCM conversion.

CPU-heavy inference runs on a few process-wide worker threads, one per engine family (``"stt"``,
``"tts"``), never a pool per call: queued work waits its turn instead of oversubscribing the cores,
and the event loop stays free.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType
from typing import Any, Generic, TypeVar

import numpy as np
import numpy.typing as npt

from callgate.errors import ProviderUnavailable

T = TypeVar("T")

_executors: dict[str, ThreadPoolExecutor] = {}
_executors_lock = threading.Lock()


def require(module: str, *, extra: str) -> ModuleType:
    """Import an optional engine module or explain what to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ProviderUnavailable(
            f"{module!r} is not installed; install it with: pip install 'callgate[{extra}]'"
        ) from exc


def onnx_session(path: Path, *, extra: str, what: str) -> Any:
    """An onnxruntime session of the model at ``path`` (``what`` names it in errors) for a batch worker
    thread: one thread, the worker itself, and no spinning (the other core belongs to the event loop)."""
    ort = require("onnxruntime", extra=extra)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own untyped errors
        raise ProviderUnavailable(f"cannot load the {what} model {path}: {exc}") from exc


def importable(module: str) -> bool:
    """True if ``module`` can be found, without importing it (keeps GPL engines unloaded)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def executor(lane: str) -> ThreadPoolExecutor:
    """The single worker thread of ``lane``, created on first use and shared by all calls."""
    with _executors_lock:
        pool = _executors.get(lane)
        if pool is None:
            pool = _executors[lane] = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"callgate-{lane}")
        return pool


async def run_in_lane(lane: str, fn: Callable[[], T]) -> T:
    """Run ``fn`` on ``lane``'s worker thread. Cancelling before it starts drops it from the queue."""
    return await asyncio.get_running_loop().run_in_executor(executor(lane), fn)


def pcm16_to_float32(pcm16: bytes) -> npt.NDArray[np.float32]:
    if len(pcm16) % 2:
        pcm16 = pcm16[:-1]
    return np.frombuffer(pcm16, dtype="<i2").astype(np.float32) / 32768.0


def float32_to_pcm16(audio: npt.NDArray[np.floating]) -> bytes:
    clipped: npt.NDArray[np.floating] = np.clip(audio * 32767.0, -32768, 32767)
    return clipped.astype("<i2").tobytes()


class Pool(Generic[T]):
    """A free list of expensive per-stream objects (native VAD/decoder states) reused across calls."""

    def __init__(self, factory: Callable[[], T], *, keep: int = 64) -> None:
        self._factory = factory
        self._free: list[T] = []
        self._keep = keep
        self._lock = threading.Lock()

    def take(self) -> T:
        with self._lock:
            if self._free:
                return self._free.pop()
        return self._factory()

    def give(self, item: T) -> None:
        with self._lock:
            if len(self._free) < self._keep:
                self._free.append(item)

    def prefill(self, count: int) -> None:
        for _ in range(count):
            self.give(self._factory())
