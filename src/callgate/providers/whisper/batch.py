"""Whisper on a worker thread per model, every call's pending utterances transcribed as one batch.

Why batches: a greedy decoding step costs nearly as much for several utterances as for one, so
decoding them together is cheaper per utterance (measured on tiny.en int8, one CTranslate2 thread, 8 s
windows, 2 cores: the decoder 23 ms of CPU per short sentence alone, 14 ms in a batch of 4; the encoder
30 and 34 ms: it does not batch). The worker (:class:`~callgate.providers._batching.BatchWorker`) runs
at once when idle and otherwise gathers what arrives while it is busy, so a quiet node answers as fast
as alone and a busy one batches more.

A batch is split by window length (see :mod:`callgate.providers.whisper.stt`), language and beam size,
so each utterance is encoded in exactly the window it would get alone: batching changes the cost, not
the words. Utterances the short window cannot be trusted with are transcribed again in the full 30 s
window, as before, on a second worker thread; with two CTranslate2 workers (``num_workers=2``, the
default) that ~0.5 s of CPU runs beside the short batches instead of holding them up.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import numpy as np
import numpy.typing as npt

from callgate.errors import ProviderError
from callgate.pipeline.interfaces import Transcript
from callgate.providers._batching import BatchWorker
from callgate.providers.whisper.text import first_of_loop, looping, started_over, words

__all__ = ["MAX_BATCH", "Options", "Request", "WhisperBatcher"]

MAX_BATCH = 8
"""Utterances per batch at most. Measured on tiny.en int8, 8 s windows, one CTranslate2 thread, 2 cores
(CPU time per utterance, encoder + decoder): alone 53 ms, 4 together 47, 8 together 51, 16 together 80
(the encoder's share grows with the batch). A longer queue runs as several batches back to back."""
SAMPLE_RATE = 16000
FRAMES_PER_S = 100  # mel frames per second (hop of 160 samples at 16 kHz)
FULL_WINDOW_S = 30
NO_SPEECH_PROB = 0.6  # with a low log probability: nothing was said (faster-whisper's defaults)
LOGPROB_FLOOR = -1.0
TRUST_FLOOR = -1.2
"""A short-window text with a lower average log probability goes to the 30 s path (the test for "nothing
was said" keeps Whisper's -1.0). Measured on 120 utterances (the turn-taking corpus and the talking-
sessions scripts, piper and espeak-ng voices), against -1.0: 10 utterances took the 30 s path instead
of 13, 18% less CPU for speech-to-text, WER 17.57% against 17.70%; no text invented on noise or silence."""

_MAX_PROMPT_TOKENS = 223
"""Whisper's decoder holds 448 tokens; faster-whisper keeps the last 223 of a prompt."""

How = Literal["short", "retry", "fallback", "full"]
FloatArray = npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class Options:
    beam_size: int = 1
    short_window: bool = True
    pad_s: int = 1
    min_window_s: int = 8
    retry_window_s: int = FULL_WINDOW_S
    """Where an untrusted short-window answer is tried again. ``FULL_WINDOW_S``: Whisper's own 30 s path
    (with its temperature fallback), never worse than transcribing in 30 s, ~0.5 s of CPU each. Shorter
    (e.g. 16): greedy in a window that long, batched, accepted unless it loops or says nothing was said
    (~0.1 s). Measured on the turn-taking corpus's 96 utterances (piper and espeak-ng voices, 24% of
    them retried): WER 19.1% against 17.9%, 22-35% less CPU for speech-to-text. Off by default: it
    costs more accuracy than it is worth unless talking callers per process matter more."""

    def window_s(self, frames: int) -> int:
        """The window for ``frames`` mel frames: their length plus ``pad_s``, at least ``min_window_s``
        (``FULL_WINDOW_S`` when the short window is off or would not be shorter)."""
        if not self.short_window:
            return FULL_WINDOW_S
        return min(FULL_WINDOW_S, max(self.min_window_s, math.ceil(frames / FRAMES_PER_S) + self.pad_s))


@dataclass(slots=True, eq=False)
class Request:
    audio: FloatArray
    language: str
    options: Options
    retry: bool = False
    """The second try, in ``options.retry_window_s``."""
    prompt: str = ""
    """Whisper's initial prompt (the text before the utterance), e.g. backchannels over the agent."""

    def window_s(self, frames: int) -> int:
        window = self.options.window_s(frames)
        return max(window, self.options.retry_window_s) if self.retry else window


Result = tuple[Transcript, How]

T = TypeVar("T")


async def _owned(future: asyncio.Future[T]) -> T:
    """Await a worker's future; if the caller is cancelled, cancel it too (a request that has not
    started yet is then skipped)."""
    try:
        return await future
    except asyncio.CancelledError:
        future.cancel()
        raise


class WhisperBatcher:
    """One loaded faster-whisper model and its worker threads."""

    def __init__(self, model: Any, *, max_batch: int = MAX_BATCH, lanes: int = 1) -> None:
        self.model = model
        self.workers: list[BatchWorker[Request, Transcript | How]] = [
            BatchWorker(self._run, name=f"callgate-stt-{i + 1}", role="stt", max_batch=max_batch)
            for i in range(max(1, lanes))
        ]
        """Short windows, batched: one thread per CTranslate2 worker (``num_workers``), so that two
        batches run at once on two cores; a request goes to an idle one, else to the shortest queue."""
        self.full_worker: BatchWorker[Request, Transcript] = BatchWorker(
            self._run_full, name="callgate-stt-full", role="stt", max_batch=4
        )
        """The 30 s window, one utterance at a time, on a thread of its own (~0.5 s of CPU each): the
        batches of short windows go on beside it or between its calls."""
        self._tokenizers: dict[str, Any] = {}

    def busy(self) -> bool:
        """Utterances are waiting or being transcribed."""
        return self.full_worker.backlog().depth > 0 or any(w.backlog().depth > 0 for w in self.workers)

    def _short_worker(self) -> BatchWorker[Request, Transcript | How]:
        if len(self.workers) == 1:
            return self.workers[0]
        return min(self.workers, key=lambda w: w.backlog().depth)

    async def transcribe(self, request: Request) -> Result:
        """The utterance's transcript and how it was made (see :attr:`WhisperSTT.stats`)."""
        first = await _owned(self._short_worker().submit(request))
        if isinstance(first, Transcript):
            return first, "short"
        if first == "fallback" and request.options.retry_window_s < FULL_WINDOW_S:
            again = dataclasses.replace(request, retry=True)
            second = await _owned(self._short_worker().submit(again))
            if isinstance(second, Transcript):
                return second, "retry"
        return await _owned(self.full_worker.submit(request)), first

    def run_blocking(self, batch: list[Request]) -> list[Transcript | How | BaseException]:
        """One batch of short windows on the calling thread (warm-up, tests); ``"fallback"`` or
        ``"full"`` for the utterances that need the 30 s window."""
        return self._run(batch)

    # ------------------------------------------------------------------ worker threads

    def _run(self, batch: list[Request]) -> list[Transcript | How | BaseException]:
        results: list[Transcript | How | BaseException] = ["full"] * len(batch)
        features = [self.model.feature_extractor(r.audio) for r in batch]
        groups: dict[tuple[int, str, int, bool, str], list[int]] = defaultdict(list)
        for i, r in enumerate(batch):
            window = r.window_s(features[i].shape[-1])
            if window < FULL_WINDOW_S:  # else short window off or no shorter: the 30 s path, as ever
                groups[(window, r.language, r.options.beam_size, r.retry, r.prompt)].append(i)
        for (window, language, beam_size, retry, _prompt), indices in groups.items():
            heard: list[Transcript | None] | list[ProviderError]
            try:
                heard = self._short(
                    [batch[i] for i in indices], [features[i] for i in indices], window, language, beam_size,
                    lenient=retry,
                )  # fmt: skip
            except Exception as exc:  # CTranslate2 raises plain RuntimeError/ValueError
                error = ProviderError(f"whisper failed: {exc}")
                error.__cause__ = exc
                heard = [error] * len(indices)
            for i, transcript in zip(indices, heard, strict=True):
                results[i] = "fallback" if transcript is None else transcript
        return results

    def _run_full(self, batch: list[Request]) -> list[Transcript | BaseException]:
        results: list[Transcript | BaseException] = []
        for request in batch:
            try:
                results.append(self._full(request))
            except Exception as exc:  # CTranslate2 raises plain RuntimeError/ValueError
                error = ProviderError(f"whisper failed: {exc}")
                error.__cause__ = exc
                results.append(error)
        return results

    def _tokenizer(self, language: str) -> Any:
        tokenizer = self._tokenizers.get(language)
        if tokenizer is None:
            from faster_whisper.tokenizer import Tokenizer

            model = self.model
            tokenizer = Tokenizer(
                model.hf_tokenizer, model.model.is_multilingual, task="transcribe", language=language
            )
            self._tokenizers[language] = tokenizer
        return tokenizer

    def _short(
        self,
        requests: list[Request],
        features: list[FloatArray],
        window_s: int,
        language: str,
        beam_size: int,
        *,
        lenient: bool = False,
    ) -> list[Transcript | None]:
        """Transcribe utterances in one window of ``window_s``; None for those not to be trusted
        (``lenient``: only a loop is not trusted)."""
        import ctranslate2  # type: ignore[import-untyped]
        from faster_whisper.transcribe import get_suppressed_tokens

        frames = window_s * FRAMES_PER_S
        windows = np.zeros((len(requests), features[0].shape[0], frames), dtype=np.float32)
        for row, f in zip(windows, features, strict=True):
            row[:, : f.shape[-1]] = f[:, :frames]
        encoded = self.model.model.encode(ctranslate2.StorageView.from_array(windows), to_cpu=False)
        tokenizer = self._tokenizer(language)
        prompt = [
            *self._previous(tokenizer, requests[0].prompt),
            *tokenizer.sot_sequence,
            tokenizer.no_timestamps,
        ]
        # Fast speech is ~5 tokens a second; a window that yields far more is looping.
        max_new = [8 + math.ceil(7 * r.audio.size / SAMPLE_RATE) for r in requests]
        generated = self.model.model.generate(
            encoded,
            [prompt] * len(requests),
            beam_size=beam_size,
            max_length=len(prompt) + max(max_new),
            return_scores=True,
            return_no_speech_prob=True,
            suppress_blank=True,
            suppress_tokens=get_suppressed_tokens(tokenizer, [-1]),
        )
        heard: list[Transcript | None] = []
        for result, limit in zip(generated, max_new, strict=True):
            tokens = result.sequences_ids[0]
            # ``scores``: the sum of log probabilities over the tokens and the end token, over their count.
            avg_logprob = float(result.scores[0]) * len(tokens) / (len(tokens) + 1)
            # Decoding is greedy and the window the same as alone, so an utterance that went past its own
            # limit (the batch ran on for a longer one) said exactly these first ``limit`` tokens alone.
            text = tokenizer.decode(tokens[:limit]).strip()
            decoded = min(len(tokens), limit)
            judged = _judge(text, decoded, limit, avg_logprob, result.no_speech_prob, language)
            if judged is None and lenient and decoded < limit and not looping(text):
                nothing = result.no_speech_prob > NO_SPEECH_PROB and avg_logprob < LOGPROB_FLOOR
                judged = Transcript(text="" if nothing or not words(text) else text, language=language)
            heard.append(judged)
        return heard

    @staticmethod
    def _previous(tokenizer: Any, text: str) -> list[int]:
        """An initial prompt as Whisper takes it: the "previous text" token, then the text's tokens (at
        most half the decoder's context, as faster-whisper keeps)."""
        if not text:
            return []
        return [tokenizer.sot_prev, *tokenizer.encode(" " + text)[-(_MAX_PROMPT_TOKENS):]]

    def _full(self, request: Request) -> Transcript:
        segments, _info = self.model.transcribe(
            request.audio,
            language=request.language,
            initial_prompt=request.prompt or None,
            beam_size=request.options.beam_size,
            condition_on_previous_text=False,
            without_timestamps=True,
        )
        # ``segments`` is lazy: decoding happens while iterating, so do it here, on the worker.
        parts = [(s.text.strip(), s.avg_logprob) for s in segments]
        text = " ".join(p for p, _ in parts if p)
        confidence = math.exp(sum(lp for _, lp in parts) / len(parts)) if parts else None
        return Transcript(text=text, confidence=confidence, language=request.language)


def _judge(
    text: str, tokens: int, max_new: int, avg_logprob: float, no_speech_prob: float, language: str
) -> Transcript | None:
    """The short window's answer for one utterance, or None if it is not to be trusted. ``tokens`` is how
    many it decoded, at most ``max_new`` (the limit for its length: it reached the limit if equal)."""
    if no_speech_prob > NO_SPEECH_PROB and avg_logprob < LOGPROB_FLOOR:
        return None  # "nothing said" is rare after VAD heard speech: let the full window confirm it
    heard = words(text)
    if not heard:
        return Transcript(text="", language=language)  # punctuation only (". . ."): nothing said
    if len(heard) == 1 and len(heard[0]) == 1 and heard[0].isalpha():
        # One letter ("f"): what the short window makes of a short word it barely hears (a "Yes."
        # through G.711 at 8 kHz, with 200 ms of silence each side); the 30 s window hears the word.
        return None
    first = first_of_loop(text)
    restarted = started_over(text) if tokens < max_new and avg_logprob >= LOGPROB_FLOOR else None
    if first is not None and len(words(first)) <= 2 and avg_logprob >= LOGPROB_FLOOR:
        # A word or two said once, then looped ("No? No? No?"): the loop is the window, not speech.
        text = first.rstrip(".?!,\u2026") + "."
    elif restarted is not None and not looping(restarted):
        # The utterance, then its start again ("Where can I park? Where can I"): the start is the
        # window's, the sentence the caller's. Saves the 30 s path (~0.5 s of CPU) half the times it ran.
        text = restarted
    elif tokens >= max_new or avg_logprob < TRUST_FLOOR or looping(text):
        return None
    return Transcript(text=text, confidence=math.exp(avg_logprob), language=language)
