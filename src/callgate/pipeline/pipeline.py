"""The conversation pipeline of one call: caller audio in, agent audio and events out.

::

    push_audio -> Listener task: [bounded input queue] -> 20 ms frames -> VAD -> TurnDetector
        -> Utterance (STT, batch or streaming) -> [turn queue] -> turn task: transcript
        -> Reply task (agent -> sentences -> TTS -> paced playout) -> PipelineOutput

The session owns the pipeline and the pipeline owns every task it starts: :meth:`stop` cancels them all.
Barge-in happens in two steps. Caller sound over the agent (``interruption_hold_ms`` of it) *holds* the
agent's audio at once, while its reply keeps being produced underneath. Then either the agent *resumes*
where it stopped (the sound was too short to be speech, STT heard no words in it, or the words were a
backchannel such as "uh-huh"), or it is *interrupted*: a :class:`StartInterruption` handled out of band
cancels the reply task, the client is told (:class:`BotInterrupted`), and the agent turn is recorded
truncated to what was played. Each decision is kept on the agent's turn record (:class:`BargeIn`).
"""

from __future__ import annotations

import asyncio
import enum
import functools
import logging
from collections import deque
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from callgate.clock import Clock
from callgate.errors import ConfigError
from callgate.pipeline.backchannel import Backchannels
from callgate.pipeline.frames import (
    BargeIn,
    PipelineEvent,
    StartInterruption,
    TurnEnded,
    TurnRecord,
    UserStartedSpeaking,
    UserStoppedSpeaking,
    UserTranscription,
)
from callgate.pipeline.interfaces import (
    STT,
    TTS,
    VAD,
    AgentEndCall,
    AgentEngine,
    AgentEvent,
    AgentText,
    EndOfTurnModel,
    Transcript,
)
from callgate.pipeline.listener import Listener, ListenerHooks
from callgate.pipeline.options import (
    MODES,
    Mode,
    PipelineMetrics,
    PipelineOptions,
    PipelineOutput,
)
from callgate.pipeline.recording import Recorder
from callgate.pipeline.reminders import goodbye_for, reminders_for
from callgate.pipeline.reply import Reply, UserTurnTiming
from callgate.pipeline.sentences import first_sentence
from callgate.pipeline.utterance import Recheck, Utterance

logger = logging.getLogger(__name__)

_MAX_PENDING_TURNS = 16

InterruptReason = Literal["long_speech", "words", "continued", "text", "turn"]


@dataclass(frozen=True, slots=True)
class _Answered:
    """A spoken caller turn and the reply that answers it, while the caller may still go on with it."""

    text: str
    decided_at: float
    last_speech_at: float
    reply: Reply


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
        end_of_turn: EndOfTurnModel | None = None,
    ) -> None:
        self._vad, self._stt, self._agent, self._tts = vad, stt, agent, tts
        self._output = output
        self._clock = clock
        self._opts = options = options or PipelineOptions()
        self._recorder = recorder
        self.metrics = PipelineMetrics()
        self.state = PipelineState.NEW
        self.failure: BaseException | None = None
        """Set if listening or turn-taking died (e.g. the output raised); the session should end the call."""
        self._mode: Mode = options.mode
        self._started_at = clock.monotonic()
        self._agent_audio_at: float | None = None
        self._listener = Listener(
            vad=vad, stt=stt, clock=clock, options=options, metrics=self.metrics, recorder=recorder,
            end_of_turn=end_of_turn,
            hooks=ListenerHooks(
                ignore_new_speech=self._ignore_new_speech,
                on_speech_started=self._on_speech_started,
                on_speech_frame=self._on_speech_frame,
                on_speech_ended=self._on_speech_ended,
                on_interim=self._on_interim,
                on_speech_aborted=self._on_speech_aborted,
                expected_answer=agent.expected_answer,
                on_guess=self._on_guess,
                on_guess_dropped=agent.drop_prepared,
                on_probable_end=self._synthesise_ahead,
            ),
        )  # fmt: skip
        self._backchannels = Backchannels.for_language(options.language, options.backchannels)
        self._reminders = reminders_for(options.language, options.reminders)
        self._goodbye = goodbye_for(options.language, options.silence_goodbye)
        self._goodbye_reply: Reply | None = None
        self._held_at: float | None = None
        """When caller sound held the current reply's audio; None while it is not held."""
        self._held_wait: asyncio.Task[None] | None = None
        """Lets a held agent go on if the caller's words are slow (``held_wait_ms``)."""
        self._let_go_at_ms: float | None = None
        """The speech (ms) of the utterance whose pause's words were a backchannel, when the agent went
        on at that pause (:meth:`_on_guess`): more speech in that utterance holds the agent again."""
        self._turns: deque[Utterance | str] = deque()
        self._turn_ready = asyncio.Event()
        self._reply: Reply | None = None
        self._reply_task: asyncio.Task[None] | None = None
        self._reply_lock = asyncio.Lock()
        self._answered: _Answered | None = None
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
    def last_activity(self) -> float:
        """Monotonic time of the last caller speech frame or agent audio frame (or of the start), for
        the session's silence timeout."""
        times = [self._started_at, self._listener.last_speech_at, self._agent_audio_at]
        return max(t for t in times if t is not None)

    @property
    def early_end_silence_ms(self) -> int:
        """This call's early end now: the agent's setting, lengthened by ``early_end_backoff_ms`` at each
        answer taken back."""
        return self._listener.early_end_silence_ms

    @property
    def agent_speaking(self) -> bool:
        reply = self._reply
        return reply is not None and not reply.finished and reply.player.speaking

    async def start(self) -> None:
        """Start listening and play the agent's greeting (returns without waiting for it)."""
        if self.state is not PipelineState.NEW:
            raise RuntimeError(f"pipeline is {self.state.value}")
        self._set_state(PipelineState.RUNNING)
        self._started_at = self._listener.t0 = self._clock.monotonic()
        self._tasks = [
            self._own(self._listener.run(), "pipeline-listen"),
            self._own(self._take_turns(), "pipeline-turns"),
        ]
        opts = self._opts
        if self._reminders and opts.reminder_after_s > 0 and opts.reminder_max_count > 0:
            self._tasks.append(self._own(self._remind_when_quiet(), "pipeline-reminders"))
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
        tasks = [*self._tasks, *(t for t in (reply_task, self._held_wait) if t is not None)]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        await self._listener.aclose()
        self._agent.drop_prepared()
        pending, self._turns = list(self._turns), deque()
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
        more than ``max_input_buffer_ms``, the oldest audio is dropped and counted in :attr:`metrics`."""
        if self.state is not PipelineState.STOPPED:
            self._listener.push(pcm16)

    def push_text(self, text: str) -> None:
        """A typed caller message; answered like a spoken turn."""
        if self.state is PipelineState.STOPPED or not text.strip():
            return
        if len(self._turns) >= _MAX_PENDING_TURNS:
            logger.warning("dropping a typed message: %d turns already pending", len(self._turns))
            return
        self._turns.append(text.strip())
        self._turn_ready.set()

    # ------------------------------------------------------------------ listener hooks

    def _ignore_new_speech(self) -> bool:
        return not self._opts.allow_interruptions and self.agent_speaking

    async def _on_speech_started(self) -> None:
        if self._held_at is not None:  # the sound that held the agent is an utterance now
            self._hint_backchannels()
        await self._emit(UserStartedSpeaking())

    async def _on_speech_frame(self, speech_ms: float) -> None:
        if not self._can_interrupt():
            return
        let_go = self._let_go_at_ms
        if (
            self._held_at is None
            and speech_ms >= self._opts.interruption_hold_ms
            and (let_go is None or speech_ms > let_go)
        ):
            self._hold()
        if speech_ms >= self._opts.interruption_min_speech_ms:
            utterance = self._listener.utterance
            went_on = utterance is not None and self._continues(utterance)
            await self._interrupt(
                StartInterruption("user_speech"), reason="continued" if went_on else "long_speech"
            )

    async def _on_speech_aborted(self) -> None:
        self._let_go_at_ms = None
        self._resume("noise")

    async def _on_speech_ended(self, utterance: Utterance) -> None:
        self._let_go_at_ms = None
        utterance.over_agent = utterance.backchannel or utterance.went_on or self._held_at is not None
        if self._held_at is not None and self._opts.held_wait_ms:
            self._wait_for_words(utterance, self._held_at)
        await self._emit(UserStoppedSpeaking())
        if utterance.ignored or len(self._turns) >= _MAX_PENDING_TURNS:
            if not utterance.ignored:
                logger.warning("dropping an utterance: %d turns already pending", len(self._turns))
            await utterance.aclose()
            return
        self._turns.append(utterance)
        self._turn_ready.set()

    def _on_guess(self, text: str) -> None:
        """A pause's words are known. Over the held agent, a backchannel lets it go on at once rather
        than when the turn ends (the caller would hear the agent wait ~200 ms more for nothing); if the
        caller goes on, their next speech holds it again and the utterance is judged whole."""
        utterance = self._listener.utterance
        if self._held_at is not None and utterance is not None and self._backchannels.matches(text):
            utterance.backchannel = True
            self._let_go_at_ms = self._listener.detector.speech_ms
            self._resume("backchannel", text)
            return
        self._prepare_answer(text)

    def _prepare_answer(self, text: str) -> None:
        """A pause's words are known: let the agent start its answer (preemptive generation) when
        nothing else stands before it (no reply in progress, no turn waiting)."""
        if not self._opts.preemptive_generation or self._turns:
            return
        task = self._reply_task
        if task is not None and not task.done():
            return  # the answer would follow this reply (or an interruption): its history will change
        utterance = self._listener.utterance
        if utterance is None or utterance.ignored or self._continues(utterance):
            return  # a continued turn is answered from where the agent stood before (take_back)
        self._agent.prepare(text)

    def _synthesise_ahead(self, text: str) -> None:
        """The turn will probably end with ``text``: when the agent knows its answer at once (a flow),
        have its first sentence synthesised during the rest of the pause (on the engine's worker for
        guesses, :meth:`TTS.synthesize_ahead`). Not at every guess: a short pause is often mid-sentence,
        and each wrong guess is a synthesis paid for with CPU that every call of the process shares."""
        if not self._opts.preemptive_generation or self._turns or self._tts is None or self._mode == "text":
            return
        task = self._reply_task
        if task is not None and not task.done():
            return
        utterance = self._listener.utterance
        if utterance is None or utterance.ignored or self._continues(utterance):
            return
        reply = self._agent.predict_reply(text)
        if reply:
            self._tts.prefetch(
                first_sentence(
                    reply,
                    max_chars=self._opts.max_sentence_chars,
                    first_clause_chars=self._opts.first_clause_chars,
                )
            )

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
                over = item.over_agent and (self._held_at is not None or item.backchannel or item.went_on)
                if over and await self._kept_talking(item, result):
                    continue  # noise or a backchannel: the agent goes on, the caller has no turn
                if result is not None:
                    await self._record_user_turn(result[0], result[2], result[3])
                    if not held and (before := self._take_back(item)) is not None:
                        held.append(before)  # the caller went on: answer the whole turn
                    held.append(result[0])
                    timing = result[1]
            else:
                if self._opts.allow_interruptions:  # cut the agent off before recording the new turn
                    await self._interrupt(StartInterruption("user_text"), reason="text")
                held.append(item)
                timing = UserTurnTiming(transcript_at=self._clock.monotonic())
                self._answered = None
                await self._record_user_turn(item, self._clock.now(), self._clock.now())
            if not held or (self._opts.allow_interruptions and self._listener.detector.in_speech):
                continue  # answer the caller once they pause, all they said together
            text = " ".join(held)
            held.clear()
            reply, decided_at = await self._answer(text, timing), timing.decided_at
            self._answered = None  # a typed message (no decided_at) is never continued
            if reply is not None and decided_at is not None:
                last = timing.last_speech_at if timing.last_speech_at is not None else decided_at
                self._answered = _Answered(text, decided_at, last, reply)

    async def _kept_talking(
        self, utterance: Utterance, result: tuple[str, UserTurnTiming, datetime, datetime] | None
    ) -> bool:
        """The utterance that held the agent is transcribed: resume the agent (True) or cut it off."""
        text = result[0] if result is not None else ""
        if not text:
            self._resume("no_words")
            return True
        if self._backchannels.matches(text):
            self._resume("backchannel", text)
            return True
        reason: InterruptReason = "continued" if self._continues(utterance) else "words"
        await self._interrupt(StartInterruption("user_speech"), reason=reason, words=text)
        return False

    def _continues(self, utterance: Utterance) -> bool:
        """The caller began ``utterance`` within ``continue_window_ms`` of the end of the turn the
        current reply answers: they went on with that turn."""
        answered, window = self._answered, self._opts.continue_window_ms / 1000.0
        return (
            answered is not None
            and window > 0
            and answered.reply is self._reply
            and 0.0 <= utterance.first_speech_at - answered.decided_at <= window
        )

    def _take_back(self, utterance: Utterance) -> str | None:
        """``utterance`` cut off the answer to the caller's previous turn by going on with it (a
        ``continued`` barge-in): the earlier words, if the agent could forget its answer to them."""
        answered = self._answered
        if answered is None or not self._continues(utterance) or not answered.reply.barge_ins:
            return None
        self._answered = None
        if answered.reply.barge_ins[-1].reason != "continued":
            return None
        if not self._agent.take_back():
            logger.info("the caller went on with their turn; the agent could not take its answer back")
            return None
        self.metrics.turns_taken_back += 1
        paused_ms = (utterance.first_speech_at - answered.last_speech_at) * 1000.0
        early = self._listener.be_more_patient(self._opts.early_end_backoff_ms, paused_ms=paused_ms)
        logger.info(
            "the caller went on with their turn: its answer is taken back (early end now %d ms)", early
        )
        return answered.text

    async def _transcribe(
        self, utterance: Utterance
    ) -> tuple[str, UserTurnTiming, datetime, datetime] | None:
        """The utterance's text, its timing, and what its turn record needs (not recorded yet)."""
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
        timing = UserTurnTiming(
            last_speech_at=utterance.last_speech_at,
            decided_at=utterance.decided_at,
            transcript_at=transcript_at,
        )
        return text, timing, self._wall(utterance.first_speech_at), self._wall(last)

    async def _record_user_turn(self, text: str, started_at: datetime, ended_at: datetime) -> None:
        self.metrics.user_turns += 1
        record = TurnRecord(role="user", text=text, started_at=started_at, ended_at=ended_at)
        await self._emit(TurnEnded(record))

    async def _answer(self, text: str, timing: UserTurnTiming) -> Reply | None:
        """Start the agent's answer to ``text``; the reply, or None if the agent has ended the call."""
        while True:
            async with self._reply_lock:
                reply, task = self._reply, self._reply_task
                if task is None or task.done():
                    if reply is not None and reply.ends_call:
                        logger.info("ignoring a caller turn after the agent ended the call")
                        return None
                    return self._start_reply(self._agent.respond(text), timing)
                if self._opts.allow_interruptions and reply is not None and reply.interruptible:
                    await self._interrupt_locked(StartInterruption("user_turn"), reason="turn")
                    continue
            await asyncio.wait({task})  # interruptions are off: the caller waits for the agent

    def _start_reply(
        self, source: AsyncIterator[AgentEvent], timing: UserTurnTiming, *, agents: bool = True
    ) -> Reply:
        """Play ``source``: the agent's own words, unless not ``agents`` (the pipeline's goodbye, which
        the agent is not told was cut off)."""
        self._forget_hold()
        reply = Reply(
            source=source,
            agent=self._agent if agents else None,
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
        return reply

    def _can_interrupt(self) -> bool:
        reply, task = self._reply, self._reply_task
        return (
            self._opts.allow_interruptions
            and reply is not None
            and task is not None
            and not task.done()
            and reply.interruptible
        )

    def _wait_for_words(self, utterance: Utterance, held_at: float) -> None:
        """The caller who holds the agent has finished: if this hold is still undecided after
        ``held_wait_ms``, the agent goes on (the words, when they come, may still cut it off)."""
        if self._held_wait is not None:
            self._held_wait.cancel()

        async def wait() -> None:
            await self._clock.sleep(self._opts.held_wait_ms / 1000.0)
            if self._held_at == held_at:
                logger.info("the caller's words are slow to come")
                utterance.went_on = True  # its words are still judged as over the agent when they come
                self._resume("slow_words")

        self._held_wait = self._own(wait(), "pipeline-held-wait")

    def _forget_hold(self) -> None:
        self._held_at = None
        self._listener.detector.held = False  # its pauses come at transcribe_pause_ms again

    def _hold(self) -> None:
        reply = self._reply
        if reply is None:
            return
        reply.player.hold()
        self._held_at = self._clock.monotonic()
        self._listener.detector.held = True
        self._hint_backchannels()
        self.metrics.barge_in_holds += 1
        logger.debug("caller sound over the agent: its audio is held")

    def _hint_backchannels(self) -> None:
        """What holds the agent is most likely a backchannel: one or two words of it that are none are
        heard again with the backchannels as the STT's prompt (see ``backchannel.py``)."""
        utterance, prompt, held_at = self._listener.utterance, self._backchannels.prompt, self._held_at
        if utterance is not None and prompt:
            early = None if held_at is None else functools.partial(self._heard_early, utterance, held_at)
            utterance.recheck = Recheck(prompt, self._backchannels.matches, early)

    def _heard_early(self, utterance: Utterance, held_at: float, words: str) -> None:
        """The held caller's words are slow to come (the STT doubts them), but heard again with the
        backchannels as its prompt they are one: the agent goes on now rather than after
        ``held_wait_ms``; the words, when they come, may still cut it off (as after ``slow_words``)."""
        if self._held_at != held_at:
            return
        utterance.went_on = True
        if utterance is self._listener.utterance:
            self._let_go_at_ms = self._listener.detector.speech_ms
        self._resume("backchannel", words)

    def _held_ms(self) -> float | None:
        held_at = self._held_at
        self._forget_hold()
        return None if held_at is None else round((self._clock.monotonic() - held_at) * 1000.0, 3)

    def _resume(
        self, reason: Literal["noise", "no_words", "backchannel", "slow_words"], words: str = ""
    ) -> None:
        """The sound that held the agent was not a turn: the agent goes on where it stopped."""
        reply = self._reply
        if self._held_at is None or reply is None:
            return
        reply.barge_ins.append(BargeIn("resumed", reason, held_ms=self._held_ms(), words=words))
        self.metrics.barge_in_resumes += 1
        logger.info("the agent resumes (%s)", reason)
        reply.player.release()

    async def _interrupt(self, frame: StartInterruption, *, reason: InterruptReason, words: str = "") -> None:
        async with self._reply_lock:
            await self._interrupt_locked(frame, reason=reason, words=words)

    async def _interrupt_locked(
        self, frame: StartInterruption, *, reason: InterruptReason, words: str = ""
    ) -> None:
        reply, task = self._reply, self._reply_task
        if reply is None or task is None or task.done() or not reply.interruptible:
            if reply is not None and self._held_at is not None:  # e.g. the agent is saying goodbye
                self._forget_hold()
                reply.player.release()
            return
        logger.info("interrupting the agent (%s, %s)", frame.reason, reason)
        reply.barge_ins.append(BargeIn("interrupted", reason, held_ms=self._held_ms(), words=words))
        task.cancel()  # takes effect at the reply's next await: no further frame is sent
        await asyncio.wait({task})
        self.metrics.interruptions += 1
        if task.cancelled():
            await reply.finish_interrupted()

    def _on_agent_frame(self, pcm16: bytes, scheduled_at: float) -> None:
        self._agent_audio_at = self._clock.monotonic()
        if self._recorder is not None:
            at = max(0.0, scheduled_at - self._listener.t0)
            self._recorder.write_agent(pcm16, at, sample_rate=self._opts.output_sample_rate)

    # ------------------------------------------------------------------ reminders

    async def _remind_when_quiet(self) -> None:
        """Say a reminder once nothing has been heard for ``reminder_after_s`` (see
        :attr:`PipelineOptions.reminder_after_s`); at most ``reminder_max_count`` in a row. A failure
        here stops the reminders, not the call."""
        try:
            await self._remind()
        except Exception:
            logger.exception("reminders failed; the call goes on without them")

    async def _remind(self) -> None:
        after, most = self._opts.reminder_after_s, self._opts.reminder_max_count
        said, turns = 0, self.metrics.user_turns
        while True:
            wait = self.last_activity + after - self._clock.monotonic()
            if wait > 0:
                await self._clock.sleep(wait)
                continue
            if self.metrics.user_turns != turns:  # the caller has had a turn since the last reminder
                said, turns = 0, self.metrics.user_turns
            if said >= most:
                await self._clock.sleep(after)
                continue
            async with self._reply_lock:
                if not self._quiet_now():
                    # an answer is on its way (or a tool runs), or the caller is talking, or types
                    wait = after if self._mode == "text" else 0.5
                else:
                    text = self._reminders[min(said, len(self._reminders) - 1)]
                    said += 1
                    self.metrics.reminders += 1
                    self._answered = None  # the caller's next words are a new turn
                    logger.info("the line has been quiet for %.0f s: reminder %d", after, said)
                    self._start_reply(self._agent.remind(text), UserTurnTiming())
                    wait = after  # its audio moves last_activity on
            await self._clock.sleep(wait)

    async def say_goodbye(self) -> bool:
        """The line has been quiet too long (the session's silence timeout): say the goodbye
        (``silence_goodbye``) and end the call after it (:class:`CallEndRequested`). False, and nothing
        said, if there is no goodbye or something is under way (an answer, the caller's speech). A
        caller who talks over the goodbye cuts it off like any answer, and the call goes on
        (:attr:`saying_goodbye` turns False)."""
        async with self._reply_lock:
            if not self._goodbye or not self._quiet_now(text_calls=True):
                return False
            self._answered = None
            logger.info("the line has been quiet too long: the agent says goodbye")
            self._goodbye_reply = self._start_reply(_farewell(self._goodbye), UserTurnTiming(), agents=False)
            return True

    @property
    def saying_goodbye(self) -> bool:
        """The goodbye of :meth:`say_goodbye` was started and not cut off by the caller."""
        reply = self._goodbye_reply
        return reply is not None and not reply.interrupted

    def _quiet_now(self, *, text_calls: bool = False) -> bool:
        """Nothing is being said or answered: no reply running, no turn waiting, no caller speech; and
        the call speaks, unless ``text_calls`` (a chat is not reminded, but is told goodbye)."""
        task = self._reply_task
        return (
            self.state is PipelineState.RUNNING
            and (text_calls or self._mode != "text")
            and (task is None or task.done())
            and not self._turns
            and self._listener.utterance is None
            and not (self._reply is not None and self._reply.ends_call)
        )

    # ------------------------------------------------------------------ helpers

    async def _emit(self, event: PipelineEvent) -> None:
        await self._output.send_event(event)

    def _wall(self, monotonic_time: float) -> datetime:
        return self._clock.now() - timedelta(seconds=self._clock.monotonic() - monotonic_time)

    def _own(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        task = asyncio.create_task(coro, name=name)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled() or (error := task.exception()) is None:
            return
        logger.error("pipeline task %s failed", task.get_name(), exc_info=error)
        if task is not self._reply_task and self.failure is None:
            self.failure = error  # listening or turn-taking is dead: the call cannot go on

    def _set_state(self, state: PipelineState) -> None:
        logger.info("pipeline %s -> %s", self.state.value, state.value)
        self.state = state


async def _farewell(text: str) -> AsyncIterator[AgentEvent]:
    yield AgentText(text)
    yield AgentEndCall(interruptible=True)
