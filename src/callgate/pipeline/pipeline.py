"""The conversation pipeline of one call: caller audio in, agent audio and events out.

::

    push_audio -> [bounded input queue] -> listen task: 20 ms frames -> VAD -> TurnDetector
        -> Utterance (STT, batch or streaming) -> [turn queue] -> turn task: transcript
        -> Reply task (agent -> sentences -> TTS -> paced playout) -> PipelineOutput

The session owns the pipeline and the pipeline owns every task it starts: :meth:`stop` cancels them all.
Barge-in is a :class:`StartInterruption` handled out of band: the reply task is cancelled (so no further
frame is sent), the client is told (:class:`BotInterrupted`), and the agent turn is recorded truncated to
what was played.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections import deque
from collections.abc import AsyncIterator, Coroutine
from datetime import datetime, timedelta
from typing import Any

from callgate.clock import Clock
from callgate.errors import ConfigError
from callgate.pipeline.audio import SAMPLE_WIDTH, Framer, StreamResampler
from callgate.pipeline.frames import (
    PipelineEvent,
    StartInterruption,
    TurnEnded,
    TurnRecord,
    UserStartedSpeaking,
    UserStoppedSpeaking,
    UserTranscription,
)
from callgate.pipeline.interfaces import STT, TTS, VAD, AgentEngine, AgentEvent, Transcript
from callgate.pipeline.options import (
    INPUT_SAMPLE_RATE,
    MODES,
    Mode,
    PipelineMetrics,
    PipelineOptions,
    PipelineOutput,
)
from callgate.pipeline.recording import Recorder
from callgate.pipeline.reply import Reply, UserTurnTiming
from callgate.pipeline.turns import SpeechEnded, SpeechStarted, SpeechState, TurnDetector
from callgate.pipeline.utterance import Utterance

logger = logging.getLogger(__name__)

_MAX_PENDING_TURNS = 16
_INPUT_GAP_S = 0.1
"""Mid-turn, this long without caller audio is taken as silence (the transport stopped sending)."""


class PipelineState(enum.Enum):
    NEW = "new"
    RUNNING = "running"
    STOPPED = "stopped"


class ConversationPipeline:
    """See the module docstring. Not thread-safe: call every method from the event loop's thread."""

    def __init__(
        self,
        *,
        vad: VAD,
        stt: STT,
        agent: AgentEngine,
        tts: TTS | None,
        output: PipelineOutput,
        clock: Clock,
        options: PipelineOptions | None = None,
        recorder: Recorder | None = None,
    ) -> None:
        self._vad, self._stt, self._agent, self._tts = vad, stt, agent, tts
        self._output = output
        self._clock = clock
        self._opts = options = options or PipelineOptions()
        self._recorder = recorder
        self.metrics = PipelineMetrics()
        self.last_activity = clock.monotonic()
        """Monotonic time of the last caller speech frame or agent audio frame (silence timeout)."""
        self.state = PipelineState.NEW
        self._mode: Mode = options.mode
        self._t0 = clock.monotonic()
        self._input: deque[tuple[bytes, float]] = deque()
        self._input_bytes = 0
        self._max_input_bytes = INPUT_SAMPLE_RATE * SAMPLE_WIDTH * options.max_input_buffer_ms // 1000
        self._input_ready = asyncio.Event()
        self._turns: deque[Utterance | str] = deque()
        self._turn_ready = asyncio.Event()
        self._detector = TurnDetector(options, sample_rate=INPUT_SAMPLE_RATE)
        self._utterance: Utterance | None = None
        self._reply: Reply | None = None
        self._reply_task: asyncio.Task[None] | None = None
        self._reply_lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []

    # ------------------------------------------------------------------ public API

    @property
    def mode(self) -> Mode:
        return self._mode

    def set_mode(self, mode: Mode) -> None:
        """Switch output mode mid-call. Applies from the next sentence to start playing: audio already
        playing finishes its sentence; later sentences are delivered per the new mode."""
        if mode not in MODES:
            raise ConfigError(f"mode must be one of {MODES}, not {mode!r}")
        self._mode = mode

    @property
    def agent_speaking(self) -> bool:
        reply = self._reply
        return reply is not None and not reply.finished and reply.player.speaking

    async def start(self) -> None:
        """Start listening and play the agent's greeting (returns without waiting for it)."""
        if self.state is not PipelineState.NEW:
            raise RuntimeError(f"pipeline is {self.state.value}")
        self._set_state(PipelineState.RUNNING)
        self._t0 = self.last_activity = self._clock.monotonic()
        self._tasks = [
            self._own(self._listen(), "pipeline-listen"),
            self._own(self._take_turns(), "pipeline-turns"),
        ]
        timing = UserTurnTiming(transcript_at=self._clock.monotonic())
        async with self._reply_lock:
            self._start_reply(self._agent.greet(), timing)

    async def stop(self) -> None:
        """Cancel every task the pipeline owns and wait for them. Idempotent. Providers and the recorder
        belong to the caller and are not closed."""
        if self.state is PipelineState.STOPPED:
            return
        self._set_state(PipelineState.STOPPED)
        reply, reply_task = self._reply, self._reply_task
        tasks = [*self._tasks, *([reply_task] if reply_task else [])]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        pending = [*self._turns, *([self._utterance] if self._utterance else [])]
        self._turns.clear()
        self._utterance = None
        for item in pending:
            if isinstance(item, Utterance):
                await item.aclose()
        if reply is not None and reply_task is not None and reply_task.cancelled() and not reply.finished:
            try:  # the call ended mid-reply: still record what the caller heard
                await reply.finish_interrupted(notify_client=False)
            except Exception:
                logger.exception("could not report the last agent turn")

    def push_audio(self, pcm16: bytes) -> None:
        """Caller audio, 16 kHz mono PCM16, any chunk size. Never blocks: if the pipeline is behind by
        more than ``max_input_buffer_ms``, the oldest audio is dropped and counted."""
        if len(pcm16) % SAMPLE_WIDTH:
            raise ValueError("PCM16 chunks must have an even number of bytes")
        if self.state is PipelineState.STOPPED or not pcm16:
            return
        self._input.append((pcm16, self._clock.monotonic()))
        self._input_bytes += len(pcm16)
        self.metrics.input_chunks += 1
        while self._input_bytes > self._max_input_bytes and len(self._input) > 1:
            old, _ = self._input.popleft()
            self._input_bytes -= len(old)
            self.metrics.input_dropped_chunks += 1
            self.metrics.input_dropped_ms += len(old) / SAMPLE_WIDTH * 1000.0 / INPUT_SAMPLE_RATE
        self._input_ready.set()

    def push_text(self, text: str) -> None:
        """A typed caller message; answered like a spoken turn."""
        if self.state is PipelineState.STOPPED or not text.strip():
            return
        if len(self._turns) >= _MAX_PENDING_TURNS:
            logger.warning("dropping a typed message: %d turns already pending", len(self._turns))
            return
        self._turns.append(text.strip())
        self._turn_ready.set()

    # ------------------------------------------------------------------ input side

    async def _listen(self) -> None:
        framer = Framer(INPUT_SAMPLE_RATE, self._opts.frame_ms)
        vad_stream = self._vad.create_stream()
        vad_resampler = StreamResampler(INPUT_SAMPLE_RATE, self._vad.capabilities.sample_rate)
        probability = 0.0
        silent_frame = bytes(framer.frame_bytes)
        gap_frames = max(1, round(_INPUT_GAP_S * 1000 / self._opts.frame_ms))
        while True:
            if not self._input:
                self._input_ready.clear()
                if self._detector.state is SpeechState.QUIET:
                    await self._input_ready.wait()
                elif not await self._wait_for_input(_INPUT_GAP_S):
                    # The transport stopped sending mid-turn (muted, DTX, a stalled client): count the
                    # gap as silence so the caller's turn still ends.
                    probability = 0.0
                    now = self._clock.monotonic()
                    for _ in range(gap_frames):
                        await self._on_frame(silent_frame, probability, now)
                continue
            chunk, received_at = self._input.popleft()
            self._input_bytes -= len(chunk)
            if self._recorder is not None:
                start = received_at - len(chunk) / SAMPLE_WIDTH / INPUT_SAMPLE_RATE - self._t0
                self._recorder.write_caller(chunk, max(0.0, start))
            for frame in framer.push(chunk):
                result = vad_stream.process(vad_resampler.process(frame))
                if result is not None:
                    probability = result
                await self._on_frame(frame, probability, received_at)

    async def _wait_for_input(self, seconds: float) -> bool:
        """Wait for caller audio at most ``seconds`` of clock time; True if some arrived."""
        arrived = asyncio.ensure_future(self._input_ready.wait())
        expired = asyncio.ensure_future(self._clock.sleep(seconds))
        try:
            await asyncio.wait({arrived, expired}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            arrived.cancel()
            expired.cancel()
            await asyncio.wait({arrived, expired})
        return bool(self._input)

    async def _on_frame(self, frame: bytes, probability: float, at: float) -> None:
        if probability >= self._opts.vad_threshold:
            self.last_activity = max(self.last_activity, at)
        event = self._detector.process(frame, probability, at)
        if isinstance(event, SpeechStarted):
            ignored = not self._opts.allow_interruptions and self.agent_speaking
            self._utterance = Utterance(
                self._stt,
                input_rate=INPUT_SAMPLE_RATE,
                language=self._opts.language,
                first_speech_at=event.first_speech_at,
                on_interim=self._on_interim,
                ignored=ignored,
            )
            self._utterance.push(event.audio)
            await self._emit(UserStartedSpeaking())
        elif isinstance(event, SpeechEnded):
            utterance, self._utterance = self._utterance, None
            await self._emit(UserStoppedSpeaking())
            if utterance is not None:
                decided_at = self._clock.monotonic()
                utterance.end(event.audio, last_speech_at=event.last_speech_at, decided_at=decided_at)
                await self._enqueue_utterance(utterance)
            return
        elif self._utterance is not None and self._detector.in_speech:
            self._utterance.push(frame)
        if self._detector.in_speech and self._should_barge_in():
            await self._interrupt(StartInterruption("user_speech"))

    def _should_barge_in(self) -> bool:
        reply, task = self._reply, self._reply_task
        return (
            self._opts.allow_interruptions
            and reply is not None
            and task is not None
            and not task.done()
            and reply.interruptible
            and self._detector.speech_ms >= self._opts.interruption_min_speech_ms
        )

    async def _enqueue_utterance(self, utterance: Utterance) -> None:
        if utterance.ignored or len(self._turns) >= _MAX_PENDING_TURNS:
            if not utterance.ignored:
                logger.warning("dropping an utterance: %d turns already pending", len(self._turns))
            await utterance.aclose()
            return
        self._turns.append(utterance)
        self._turn_ready.set()

    async def _on_interim(self, transcript: Transcript) -> None:
        await self._emit(UserTranscription(transcript.text, final=False))

    # ------------------------------------------------------------------ turns and replies

    async def _take_turns(self) -> None:
        held: list[str] = []  # transcripts held back while the caller kept talking
        timing = UserTurnTiming()
        while True:
            if not self._turns:
                self._turn_ready.clear()
                await self._turn_ready.wait()
                continue
            item = self._turns.popleft()
            if isinstance(item, Utterance):
                result = await self._transcribe(item)
                if result is not None:
                    held.append(result[0])
                    timing = result[1]
            else:
                if self._opts.allow_interruptions:  # cut the agent off before recording the new turn
                    await self._interrupt(StartInterruption("user_text"))
                held.append(item)
                timing = UserTurnTiming(transcript_at=self._clock.monotonic())
                await self._record_user_turn(item, self._clock.now(), self._clock.now())
            if not held or (self._opts.allow_interruptions and self._detector.in_speech):
                continue  # answer the caller once they pause, all they said together
            text = " ".join(held)
            held.clear()
            await self._answer(text, timing)

    async def _transcribe(self, utterance: Utterance) -> tuple[str, UserTurnTiming] | None:
        try:
            transcript = await utterance.transcribe()
        except Exception:
            self.metrics.stt_failures += 1
            logger.exception("speech-to-text failed; the utterance is lost")
            return None
        transcript_at = self._clock.monotonic()
        text = transcript.text.strip()
        if not text:
            return None
        await self._emit(UserTranscription(text, final=True))
        last = utterance.last_speech_at if utterance.last_speech_at is not None else transcript_at
        await self._record_user_turn(text, self._wall(utterance.first_speech_at), self._wall(last))
        return text, UserTurnTiming(
            last_speech_at=utterance.last_speech_at,
            decided_at=utterance.decided_at,
            transcript_at=transcript_at,
        )

    async def _record_user_turn(self, text: str, started_at: datetime, ended_at: datetime) -> None:
        self.metrics.user_turns += 1
        record = TurnRecord(role="user", text=text, started_at=started_at, ended_at=ended_at)
        await self._emit(TurnEnded(record))

    async def _answer(self, text: str, timing: UserTurnTiming) -> None:
        while True:
            async with self._reply_lock:
                reply, task = self._reply, self._reply_task
                if task is None or task.done():
                    if reply is not None and reply.ends_call:
                        logger.info("ignoring a caller turn after the agent ended the call")
                        return
                    self._start_reply(self._agent.respond(text), timing)
                    return
                if self._opts.allow_interruptions and reply is not None and reply.interruptible:
                    await self._interrupt_locked(StartInterruption("user_turn"))
                    continue
            await asyncio.wait({task})  # interruptions are off: the caller waits for the agent

    def _start_reply(self, source: AsyncIterator[AgentEvent], timing: UserTurnTiming) -> None:
        reply = Reply(
            source=source,
            agent=self._agent,
            tts=self._tts,
            speak=lambda: self._mode != "text",
            output=self._output,
            clock=self._clock,
            options=self._opts,
            metrics=self.metrics,
            timing=timing,
            on_frame=self._on_agent_frame,
        )
        self._reply = reply
        self._reply_task = self._own(reply.run(), "pipeline-reply")

    async def _interrupt(self, frame: StartInterruption) -> None:
        async with self._reply_lock:
            await self._interrupt_locked(frame)

    async def _interrupt_locked(self, frame: StartInterruption) -> None:
        reply, task = self._reply, self._reply_task
        if reply is None or task is None or task.done() or not reply.interruptible:
            return
        logger.info("interrupting the agent (%s)", frame.reason)
        task.cancel()  # takes effect at the reply's next await: no further frame is sent
        await asyncio.wait({task})
        self.metrics.interruptions += 1
        if task.cancelled():
            await reply.finish_interrupted()

    def _on_agent_frame(self, pcm16: bytes, scheduled_at: float) -> None:
        self.last_activity = max(self.last_activity, self._clock.monotonic())
        if self._recorder is not None:
            self._recorder.write_agent(
                pcm16, max(0.0, scheduled_at - self._t0), sample_rate=self._opts.output_sample_rate
            )

    # ------------------------------------------------------------------ helpers

    async def _emit(self, event: PipelineEvent) -> None:
        await self._output.send_event(event)

    def _wall(self, monotonic_time: float) -> datetime:
        return self._clock.now() - timedelta(seconds=self._clock.monotonic() - monotonic_time)

    def _own(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        task = asyncio.create_task(coro, name=name)
        task.add_done_callback(_log_failure)
        return task

    def _set_state(self, state: PipelineState) -> None:
        logger.info("pipeline %s -> %s", self.state.value, state.value)
        self.state = state


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("pipeline task %s failed", task.get_name(), exc_info=task.exception())
