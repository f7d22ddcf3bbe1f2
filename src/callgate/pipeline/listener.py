"""The caller side of a call: bounded input queue -> 20 ms frames -> VAD -> turn detection -> utterances.

:meth:`Listener.push` is what the transport's receive loop calls: it never blocks and never grows without
bound (the oldest audio is dropped and counted when the pipeline falls behind). :meth:`Listener.run`
consumes the queue and reports to its :class:`ListenerHooks` (the pipeline): speech started, each speech
frame (for barge-in), and each finished :class:`Utterance`.

At each pause the turn may end early: when the words so far answer what the agent expects, or when the
end-of-turn model (``semantic``) judges the caller done; a "not done" from the model lets the pause run to
``max_wait_ms``. Without the model, a transcript that reads as a finished sentence ends the turn too, at a
longer pause (``finished_sentence_silence_ms``: a complete clause is often followed by more). Words
that leave the sentence open ("I'd like to book for", ``open_phrase_wait``) let the pause run to
``max_wait_ms`` too, and overrule the model's "done".
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from callgate.clock import Clock
from callgate.pipeline.audio import SAMPLE_WIDTH, Framer, StreamResampler, resample
from callgate.pipeline.frames import InputAudio
from callgate.pipeline.interfaces import STT, VAD, EndOfTurnModel, Transcript, VADStream
from callgate.pipeline.options import INPUT_SAMPLE_RATE, PipelineMetrics, PipelineOptions
from callgate.pipeline.recording import Recorder
from callgate.pipeline.turns import (
    SpeechAborted,
    SpeechEnded,
    SpeechPaused,
    SpeechResumed,
    SpeechStarted,
    SpeechState,
    TurnDetector,
)
from callgate.pipeline.utterance import Utterance, sounds_finished, trails_off

logger = logging.getLogger(__name__)

INPUT_GAP_S = 0.1
"""Mid-turn, this long without caller audio is taken as silence (the transport stopped sending)."""


@dataclass(frozen=True, slots=True)
class ListenerHooks:
    """What the listener reports to its owner (the pipeline)."""

    ignore_new_speech: Callable[[], bool]
    """True if speech starting now is not to be answered (the agent speaks; no interruptions)."""
    on_speech_started: Callable[[], Awaitable[None]]
    on_speech_frame: Callable[[float], Awaitable[None]]
    """Each frame from the first one VAD judges speech until the turn ends, with the speech so far in
    this utterance in ms (before ``min_speech_ms`` too: barge-in holds the agent early)."""
    on_speech_ended: Callable[[Utterance], Awaitable[None]]
    on_interim: Callable[[Transcript], Awaitable[None]]
    on_speech_aborted: Callable[[], Awaitable[None]]
    """The sound that began was too short to be speech."""
    expected_answer: Callable[[str], bool] = lambda text: False
    """True if the words so far answer what the agent waits for (ends the turn at the pause)."""
    on_guess: Callable[[str], None] = lambda text: None
    """A pause's speculative transcript is ready (the turn may end with these words)."""
    on_guess_dropped: Callable[[], None] = lambda: None
    """The caller went on after the pause whose words :attr:`on_guess` was told."""
    on_probable_end: Callable[[str], None] = lambda text: None
    """The turn will probably end with ``text``, the words of the current pause: they end it at the
    early-end pause (a finished sentence, an expected answer), or the pause outlasted the early end and
    nothing says the caller is mid-thought. Told at most once per pause."""


class Listener:
    def __init__(
        self,
        *,
        vad: VAD,
        stt: STT,
        clock: Clock,
        options: PipelineOptions,
        metrics: PipelineMetrics,
        hooks: ListenerHooks,
        recorder: Recorder | None = None,
        end_of_turn: EndOfTurnModel | None = None,
    ) -> None:
        self._vad, self._stt, self._clock = vad, stt, clock
        self._end_of_turn = end_of_turn if options.semantic else None
        if options.semantic and end_of_turn is None:
            logger.info("semantic end of turn asked for, but no end-of-turn model: silence only")
        self._verdict: asyncio.Task[float] | None = None
        """The end-of-turn model's answer for the current pause."""
        self._put_off: bytes | None = None
        """A pause's audio whose speculative transcription waits for ``early_end_silence_ms`` (the STT
        was busy when the pause reached ``transcribe_pause_ms``)."""
        self._told_probable_end = False
        """:attr:`ListenerHooks.on_probable_end` was told about the current pause."""
        self._expected: tuple[str, bool] | None = None
        """The current pause's words, and whether the agent expects them (asked once per pause)."""
        self._opts = options
        self._metrics = metrics
        self._hooks = hooks
        self._recorder = recorder
        self._queue: deque[InputAudio] = deque()
        self._queued_bytes = 0
        self._max_bytes = INPUT_SAMPLE_RATE * SAMPLE_WIDTH * options.max_input_buffer_ms // 1000
        self._ready = asyncio.Event()
        self.detector = TurnDetector(options, sample_rate=INPUT_SAMPLE_RATE)
        self.utterance: Utterance | None = None
        """The utterance being spoken, if any."""
        self.last_speech_at: float | None = None
        """Arrival time of the last frame VAD judged to be speech."""
        self.t0 = clock.monotonic()
        """Call start, for recording timestamps."""

    @property
    def early_end_silence_ms(self) -> int:
        """This call's early end (:meth:`be_more_patient` lengthens it)."""
        return self._opts.early_end_silence_ms

    def be_more_patient(self, ms: int, *, paused_ms: float = 0.0) -> int:
        """The caller went on after a pause of ``paused_ms`` that ended their turn early: make this call's
        early end ``ms`` longer than it was and than that pause, up to two frames under the end of the
        turn (so that pauses are still transcribed as they happen); returns the early end now in force."""
        opts = self._opts
        early, cap = opts.early_end_silence_ms, opts.end_of_turn_silence_ms - 2 * opts.frame_ms
        if ms > 0 and 0 < early < cap:
            longer = min(cap, max(early, round(paused_ms)) + ms)
            self._opts = dataclasses.replace(opts, early_end_silence_ms=longer)
            self.detector.retune(self._opts)
        return self._opts.early_end_silence_ms

    def push(self, pcm16: bytes) -> None:
        if len(pcm16) % SAMPLE_WIDTH:
            raise ValueError("PCM16 chunks must have an even number of bytes")
        if not pcm16:
            return
        self._queue.append(InputAudio(pcm16, self._clock.monotonic()))
        self._queued_bytes += len(pcm16)
        self._metrics.input_chunks += 1
        while self._queued_bytes > self._max_bytes and len(self._queue) > 1:
            old = self._queue.popleft().pcm16
            self._queued_bytes -= len(old)
            self._metrics.input_dropped_chunks += 1
            self._metrics.input_dropped_ms += len(old) / SAMPLE_WIDTH * 1000.0 / INPUT_SAMPLE_RATE
        self._ready.set()

    async def run(self) -> None:
        vad_stream = self._vad.create_stream()
        try:
            await self._consume(vad_stream)
        finally:
            vad_stream.close()

    async def _consume(self, vad_stream: VADStream) -> None:
        framer = Framer(INPUT_SAMPLE_RATE, self._opts.frame_ms)
        # Low-latency resampling: VAD must see speech end as it happens (see StreamResampler).
        vad_resampler = StreamResampler(INPUT_SAMPLE_RATE, self._vad.capabilities.sample_rate, quality="QQ")
        probability = 0.0
        silent_frame = bytes(framer.frame_bytes)
        gap_frames = max(1, round(INPUT_GAP_S * 1000 / self._opts.frame_ms))
        while True:
            if not self._queue:
                self._ready.clear()
                if self.detector.state is SpeechState.QUIET:
                    await self._ready.wait()
                elif not await self._wait_for_input(INPUT_GAP_S):
                    # The transport stopped sending mid-turn (muted, DTX, a stalled client): count the
                    # gap as silence so the caller's turn still ends.
                    probability = 0.0
                    now = self._clock.monotonic()
                    for _ in range(gap_frames):
                        await self._on_frame(silent_frame, probability, now)
                continue
            item = self._queue.popleft()
            self._queued_bytes -= len(item.pcm16)
            if self._recorder is not None:
                start = item.received_at - len(item.pcm16) / SAMPLE_WIDTH / INPUT_SAMPLE_RATE - self.t0
                self._recorder.write_caller(item.pcm16, max(0.0, start))
            for frame in framer.push(item.pcm16):
                # The engine may run the model elsewhere (Silero batches all calls on a worker thread):
                # each frame still waits for its own probability, so frames are judged in order.
                result = await vad_stream.process(vad_resampler.process(frame))
                if result is not None:
                    probability = result
                await self._on_frame(frame, probability, item.received_at)

    async def aclose(self) -> None:
        """Drop queued audio and release the utterance in progress (its STT stream)."""
        self._queue.clear()
        self._queued_bytes = 0
        self._drop_verdict()
        self._put_off = None
        utterance, self.utterance = self.utterance, None
        if utterance is not None:
            await utterance.aclose()

    async def _wait_for_input(self, seconds: float) -> bool:
        """Wait for caller audio at most ``seconds`` of clock time; True if some arrived."""
        arrived = asyncio.ensure_future(self._ready.wait())
        expired = asyncio.ensure_future(self._clock.sleep(seconds))
        try:
            await asyncio.wait({arrived, expired}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            arrived.cancel()
            expired.cancel()
            await asyncio.wait({arrived, expired})
        return bool(self._queue)

    async def _on_frame(self, frame: bytes, probability: float, at: float) -> None:
        if probability >= self._opts.vad_threshold:
            self.last_speech_at = at
        event = self.detector.process(frame, probability, at)
        if event is None and self._put_off is not None:
            self._speculate_put_off()
        if event is None and self.detector.in_speech and self._ends_at_pause():
            event = self.detector.end_now()
        if event is not None:
            self._told_probable_end = False  # a new utterance, a new pause, or the end of one
            self._expected = None
        if isinstance(event, SpeechStarted):
            self.utterance = Utterance(
                self._stt,
                input_rate=INPUT_SAMPLE_RATE,
                language=self._opts.language,
                first_speech_at=event.first_speech_at,
                on_interim=self._hooks.on_interim,
                ignored=self._hooks.ignore_new_speech(),
                ends_turn=self._words_end_turn,
                on_guess=self._on_guess,
                clock=self._clock,
            )
            self.utterance.push(event.audio)
            await self._hooks.on_speech_started()
        elif isinstance(event, SpeechEnded):
            self._drop_verdict()
            self._put_off = None
            utterance, self.utterance = self.utterance, None
            if utterance is not None:
                decided_at = self._clock.monotonic()
                utterance.end(event.audio, last_speech_at=event.last_speech_at, decided_at=decided_at)
                await self._hooks.on_speech_ended(utterance)
            return
        elif isinstance(event, SpeechAborted):
            await self._hooks.on_speech_aborted()
            return
        elif self.utterance is not None:
            if isinstance(event, SpeechPaused):
                if (
                    self.detector.silence_ms < self._opts.early_end_silence_ms
                    and not self.detector.held
                    and self._stt.busy()
                ):
                    self._put_off = event.audio  # a short pause: only worth the STT's spare time
                else:
                    self.utterance.speculate(event.audio)
                    self._ask_model(event.audio)
            elif isinstance(event, SpeechResumed):
                self._put_off = None
                self.utterance.discard_speculation()
                self._hooks.on_guess_dropped()
                self._drop_verdict()
            if self.detector.in_speech:
                self.utterance.push(frame)
        if self.detector.state is not SpeechState.QUIET:
            await self._hooks.on_speech_frame(self.detector.speech_ms)

    # ------------------------------------------------------------------ early end of turn

    def _words_end_turn(self, text: str) -> bool:
        if self._hooks.expected_answer(text):
            return True
        # With the model, intonation decides; Whisper ends a trailing-off phrase with a full stop too.
        return self._end_of_turn is None and sounds_finished(text, language=self._opts.language)

    def _speculate_put_off(self) -> None:
        """Once a put-off pause reaches ``early_end_silence_ms``, transcribe it (and ask the model)."""
        if not self.detector.in_speech or self.utterance is None:
            self._put_off = None
        elif self.detector.silence_ms >= self._opts.early_end_silence_ms:
            audio, self._put_off = self._put_off, None
            assert audio is not None
            self.utterance.speculate(audio)
            self._ask_model(audio)

    def _ask_model(self, audio: bytes) -> None:
        model = self._end_of_turn
        if model is None or self.utterance is None or self.utterance.ignored:
            return
        self._drop_verdict()
        caps = model.capabilities
        pcm = (
            audio
            if caps.sample_rate == INPUT_SAMPLE_RATE
            else resample(audio, INPUT_SAMPLE_RATE, caps.sample_rate)
        )
        keep = caps.sample_rate * caps.max_audio_ms // 1000 * SAMPLE_WIDTH
        task = asyncio.create_task(model.predict(pcm[-keep:]), name="end-of-turn")
        task.add_done_callback(_retrieve)
        self._verdict = task

    def _drop_verdict(self) -> None:
        task, self._verdict = self._verdict, None
        if task is not None:
            task.cancel()

    def _on_guess(self, text: str) -> None:
        self._hooks.on_guess(text)
        if not self._told_probable_end and not self.detector.waiting_longer and self._words_end_turn(text):
            self._told_probable_end = True
            self._hooks.on_probable_end(text)

    def _ends_at_pause(self) -> bool:
        """At a pause: True if the turn ends now; a "mid-thought" verdict makes the pause last longer.
        A pause that outlasts the early end with its words known is told once
        (:attr:`ListenerHooks.on_probable_end`)."""
        if self._decide_at_pause():
            return True
        utterance = self.utterance
        if (
            not self._told_probable_end
            and utterance is not None
            and self.detector.silence_ms >= self._opts.early_end_silence_ms
            and not self.detector.waiting_longer
        ):
            words = utterance.speculated_text()
            if words is not None:
                self._told_probable_end = True
                self._hooks.on_probable_end(words)
        return False

    def _decide_at_pause(self) -> bool:
        utterance = self.utterance
        if utterance is None or self.detector.silence_ms < self._opts.early_end_silence_ms:
            return False  # the words may be known already (transcribe_pause_ms); the turn ends no sooner
        if utterance.finished_early:
            return self.detector.silence_ms >= self._silence_to_end(utterance)
        if self._end_of_turn is None:  # silence decides, unless the words leave the sentence open
            if self._opts.open_phrase_wait and self._words_left_open(utterance):
                self.detector.wait_longer(self._opts.max_wait_ms)
            return False
        task = self._verdict
        if task is None or not task.done():
            return False
        if task.cancelled() or task.exception() is not None:
            self._verdict = None  # no verdict: the silence decides
            return False
        if task.result() >= self._opts.semantic_threshold:
            # The model hears a finished turn. A batch STT is transcribing the same pause: its words can
            # still veto a cut-in ("I'd like to book for"). Waiting for them costs no answer time, since
            # the agent needs those words anyway (they become the final transcript if silence follows).
            if self._opts.open_phrase_wait and utterance.speculating:
                words = utterance.speculated_text()
                if words is None:
                    return False
                if trails_off(words, language=self._opts.language):
                    self._verdict = None  # judged: mid-thought; speech resumed asks the model again
                    self.detector.wait_longer(self._opts.max_wait_ms)
                    return False
            return True
        self.detector.wait_longer(self._opts.max_wait_ms)
        return False

    def _silence_to_end(self, utterance: Utterance) -> float:
        """The pause after which words that end the turn early do so: ``early_end_silence_ms`` for what
        the agent expects, ``finished_sentence_silence_ms`` (never less) for a finished sentence."""
        early, sentence = self._opts.early_end_silence_ms, self._opts.finished_sentence_silence_ms
        if sentence <= early:
            return early
        text = utterance.speculated_text() or ""
        if self._expected is None or self._expected[0] != text:  # asked once per pause, not per frame
            self._expected = (text, self._hooks.expected_answer(text))
        return early if self._expected[1] else sentence

    def _words_left_open(self, utterance: Utterance) -> bool:
        words = utterance.speculated_text()
        return words is not None and trails_off(words, language=self._opts.language)


def _retrieve(task: asyncio.Task[float]) -> None:
    """A model failure only means no early end; log it once here, not as an unretrieved exception."""
    if not task.cancelled() and (error := task.exception()) is not None:
        logger.warning("end-of-turn model failed: %s", error)
