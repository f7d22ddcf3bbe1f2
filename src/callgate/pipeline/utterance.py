"""One caller utterance on its way to a transcript, batch or streaming per the STT's capabilities.

Created when the turn detector confirms speech. With a streaming STT the audio goes to the engine as it
arrives and interim results are forwarded; otherwise the utterance is transcribed in one request when the
turn ends. Either way :meth:`Utterance.transcribe` returns the final transcript.

A batch engine may also transcribe *speculatively* at a pause (:meth:`Utterance.speculate`): if the caller
goes on, the guess is dropped (:meth:`Utterance.discard_speculation`); if the words end the turn (by default a
finished sentence, :func:`sounds_finished`; the listener also accepts an answer the agent expects) the
listener ends the turn at once; and if only silence follows, the guess is the final transcript, so the end
of the turn does not wait for the engine again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from callgate.clock import Clock, SystemClock
from callgate.pipeline.audio import StreamResampler, resample
from callgate.pipeline.interfaces import STT, STTStream, Transcript

logger = logging.getLogger(__name__)

InterimHandler = Callable[[Transcript], Awaitable[None]]

_OPEN = frozenset(
    {
        # conjunctions and complementisers
        "and", "but", "or", "nor", "because", "if", "than", "which", "whose", "while", "whereas", "although",
        "though", "unless", "whether",
        # fillers
        "um", "uh", "er", "erm", "hmm", "uhm",
        # articles, possessives and other determiners
        "the", "a", "an", "my", "your", "our", "their", "his", "its", "every", "each", "another",
        # prepositions ("hold on", "come in" are judged apart)
        "to", "of", "for", "with", "at", "from", "about", "by", "into", "onto", "between", "towards",
        "toward", "via", "per", "until", "till", "during", "without", "within",
    }
)  # fmt: skip
"""Words a finished sentence rarely ends with: the caller is going on."""

_SUBJECTS = frozenset({"i", "you", "he", "she", "it", "we", "they", "that", "this", "there", "here", "who"})

_AUXILIARIES = frozenset(
    {"is", "are", "was", "were", "am", "will", "would", "can", "could", "should", "shall", "must"}
)
"""Open after a noun ("my account number is", "the doctor will"); after a subject a short answer may end
on one ("Yes, it is.", "I think we can."), so there silence decides."""

_OPEN_VERBS = frozenset(
    {"take", "make", "get", "give", "bring", "put", "tell", "change", "buy", "send", "add", "reschedule"}
)
"""Verbs that need what follows them: after "to", a modal or a subject ("I'd like to change", "I think
I'll take") a sentence ending on one is cut off (a question says so with its "?"). "Keep the change"
or "I'd like to cancel" end fine."""

_BEFORE_VERB = frozenset(
    {
        "to", "i", "we", "you", "they", "i'll", "we'll", "you'll", "they'll", "i'd", "we'd", "will", "would",
        "can", "could", "should", "might", "may", "must", "please", "let's",
    }
)  # fmt: skip


def _words_of(words: str) -> frozenset[str]:
    return frozenset(words.split())


_OPENS_AFTER = {
    # "that" after a verb of saying or thinking opens a clause ("the problem is that", "I think that").
    "that": _words_of("is was think thought said say mean know guess hope so"),
    # a verb with only its indirect object ("can you tell me", "could you send us")
    "me": _words_of("tell give send show bring get remind email text"),
    "us": _words_of("tell give send show bring get remind email text"),
}
"""Words that open a phrase after these words only."""

_CLOSES_AFTER = {
    # "on" and "in" end a phrasal verb ("hold on", "come in", "log in"), elsewhere a phrase follows.
    "on": _words_of("hold come go carry log logged move turn put switch keep"),
    "in": _words_of("come log logged check checked book drop fill sign plug put"),
    "so": _words_of("think thought hope guess believe suppose said say told expect"),
    "like": _words_of("you we they he she looks look feel feels"),
}
"""Words that are open except after these words ("I think so", "if you like")."""

_AMBIGUOUS = frozenset({"then", "as"})
"""Neither: "okay then" ends, "and then" goes on; silence decides."""

_HOLDS = tuple(
    tuple(phrase.split())
    for phrase in (
        "let me check", "let me see", "let me think", "let me look", "let me find it", "let me have a look",
        "hold on", "hang on", "one moment", "one second", "one sec", "one minute", "just a second",
        "just a sec", "just a moment", "just a minute", "give me a second", "give me a sec",
        "give me a moment", "give me a minute", "bear with me", "wait a second", "wait a moment",
        "wait a minute",
    )
)  # fmt: skip
"""The caller asks for a moment ("let me check", "hang on"): what they went to find comes after the pause,
so the turn is open however complete the words are (:func:`_asks_for_a_moment`)."""

_LEAD_INS = frozenset(
    {"okay", "ok", "sure", "yes", "yeah", "right", "alright", "um", "uh", "er", "erm", "so", "well", "oh",
     "please", "and", "but", "just"}
)  # fmt: skip
"""Words that may come before a request for a moment in its clause ("okay, just a second", "um, hang on")."""


_RIGHT_QUOTE = "\u2019"


def _words(text: str) -> list[str]:
    text = text.replace(_RIGHT_QUOTE, "'")  # "I\u2019ll" as Whisper may write it
    cleaned = ("".join(c for c in w.lower() if c.isalpha() or c == "'") for w in text.split())
    return [w.strip("'") for w in cleaned if w.strip("'")]


def _english(language: str) -> bool:
    return language.lower().split("-")[0] == "en"


def _ending(words: list[str]) -> str:
    """How an English sentence ending on ``words`` ends: ``open`` (its last words open a phrase: the
    caller is going on), ``closed`` (it may be finished) or ``ambiguous`` (only silence can tell)."""
    if not words:
        return "ambiguous"
    last, before = words[-1], (words[-2] if len(words) > 1 else "")
    if last in _OPEN or (last in _OPEN_VERBS and before in _BEFORE_VERB):
        return "open"
    if last in _AUXILIARIES:
        return "ambiguous" if before in _SUBJECTS else "open"
    if last in _CLOSES_AFTER:
        return "closed" if before in _CLOSES_AFTER[last] else "open"
    if last in _OPENS_AFTER and before in _OPENS_AFTER[last]:
        return "open"
    return "ambiguous" if last in _AMBIGUOUS else "closed"


def _asks_for_a_moment(text: str) -> bool:
    """True if the last clause of ``text`` (after its last ``,;.:``) is a request for a moment, alone or
    after words like "okay" or another such request: "Let me check.", "Okay, just a second.", "Hang on,
    let me have a look." ("It takes one second." and "Let me check the date." are not)."""
    words = _words(text.replace(";", ",").replace(":", ",").rstrip(".!?").replace(".", ",").split(",")[-1])
    asked = False
    while words:
        hold = next((h for h in _HOLDS if tuple(words[-len(h) :]) == h), None)
        if hold is not None:
            words, asked = words[: -len(hold)], True
        elif asked and words[-1] in _LEAD_INS:
            words = words[:-1]
        else:
            return False
    return asked


def sounds_finished(text: str, *, language: str = "en") -> bool:
    """True if ``text`` reads as a complete turn: it ends with ``?`` or ``!``, or with ``.`` (not
    ``...``) after words that may end a sentence (not "and", "the", "um", "I'd like to change", "my
    number is" ...; English only: in another language a full stop is taken as it is)."""
    stripped = text.strip().rstrip("\"')")
    if not stripped or stripped[-1] not in ".?!" or stripped.endswith(".."):
        return False
    words = _words(stripped)
    if not words:
        return False
    # Whisper ends a cut-off phrase with a full stop too; a question or an exclamation is finished.
    if stripped[-1] != "." or not _english(language):
        return True
    return _ending(words) == "closed" and not _asks_for_a_moment(stripped)


def trails_off(text: str, *, language: str = "en") -> bool:
    """True if ``text`` stops where a sentence goes on: its last words open a phrase ("I'd like to book
    for", "my number is", "um", "can you tell me") or ask for a moment ("let me check", "hang on");
    English only; or it ends with ``...``. A question or an exclamation never trails off."""
    stripped = text.strip().rstrip("\"')")
    if not stripped or stripped[-1] in "?!":
        return False
    if stripped.endswith(("...", "\u2026")):
        return True
    return _english(language) and (_ending(_words(stripped)) == "open" or _asks_for_a_moment(stripped))


SLOW_HEARING_S = 0.2
"""A short utterance's first hearing that takes longer than this is one the STT doubts (Whisper then
tries its 30 s window with temperature fallback, ~1 s on a small CPU; its short window answers in
~0.1 s): with a :class:`Recheck` that has ``early``, the second hearing is started beside it."""
SHORT_UTTERANCE_S = 2.0
"""Longer utterances are never heard early with the prompt (a backchannel is shorter)."""


@dataclass(frozen=True, slots=True)
class Recheck:
    """Short words an utterance should hear again: not ``wanted`` the first time, the STT is asked once
    more with ``prompt`` (text written the way they may well be), and its answer kept if ``wanted``."""

    prompt: str
    wanted: Callable[[str], bool]
    early: Callable[[str], None] | None = None
    """Told the second hearing's words if they are ``wanted`` while the first is still slow to come
    (the second is then asked after :data:`SLOW_HEARING_S`, not after the first): the first still
    decides the utterance's words when it comes."""


class Utterance:
    def __init__(
        self,
        stt: STT,
        *,
        input_rate: int,
        language: str,
        first_speech_at: float,
        on_interim: InterimHandler | None = None,
        ignored: bool = False,
        ends_turn: Callable[[str], bool] = sounds_finished,
        on_guess: Callable[[str], None] | None = None,
        clock: Clock | None = None,
    ) -> None:
        self._stt = stt
        self._clock: Clock = clock or SystemClock()
        self._input_rate = input_rate
        self._language = language
        self.first_speech_at = first_speech_at
        self.ignored = ignored
        """Speech the pipeline will not answer (the agent was speaking and interruptions are off)."""
        self._ends_turn = ends_turn
        self._on_guess = on_guess
        """Told each speculative transcript's words as soon as they are ready (preemptive answers)."""
        self.over_agent = False
        """Spoken while the agent's audio was held for it: a backchannel or noise lets the agent go on."""
        self.backchannel = False
        """The words at one of its pauses were a backchannel, and the agent went on there."""
        self.went_on = False
        """Its words were slow to come: the agent went on without them (``slow_words``, or a backchannel
        heard early with the prompt); they are still judged as over the agent when they come."""
        self.recheck: Recheck | None = None
        """Set when the utterance holds the agent: one or two words that are no backchannel are heard
        again with the backchannels as the STT's prompt."""
        self.last_speech_at: float | None = None
        self.decided_at: float | None = None
        self.audio = b""
        self._stream: STTStream | None = None
        self._resampler: StreamResampler | None = None
        self._interim_task: asyncio.Task[None] | None = None
        self._speculation: asyncio.Task[Transcript] | None = None
        if stt.capabilities.streaming and not ignored:
            try:
                self._stream = stt.stream(language=language)
            except Exception:
                logger.exception("could not open an STT stream; transcribing the utterance in one go")
                return
            self._resampler = StreamResampler(input_rate, stt.capabilities.sample_rate)
            if on_interim is not None:
                self._interim_task = asyncio.create_task(
                    self._forward_interim(self._stream, on_interim), name="stt-interim"
                )

    @property
    def streaming(self) -> bool:
        return self._stream is not None

    def push(self, pcm16: bytes) -> None:
        """Audio at the input rate, while the caller speaks (streaming engines only need it)."""
        if self._stream is not None and self._resampler is not None:
            self._stream.push(self._resampler.process(pcm16))

    def speculate(self, audio: bytes) -> None:
        """Start transcribing ``audio`` (the utterance so far) in the background; batch engines only."""
        if self._stream is not None or self.ignored:
            return
        self.discard_speculation()
        pcm = resample(audio, self._input_rate, self._stt.capabilities.sample_rate)
        task = asyncio.create_task(self._heard(pcm), name="stt-guess")
        task.add_done_callback(_retrieve)
        if self._on_guess is not None:
            task.add_done_callback(self._guessed)
        self._speculation = task

    def _guessed(self, task: asyncio.Task[Transcript]) -> None:
        if task is not self._speculation or task.cancelled() or task.exception() is not None:
            return
        text = task.result().text.strip()
        if text and self._on_guess is not None:
            self._on_guess(text)

    def discard_speculation(self) -> None:
        """The caller went on: the words so far are not the turn."""
        task, self._speculation = self._speculation, None
        if task is not None:
            task.cancel()

    @property
    def speculating(self) -> bool:
        """A speculative transcript is on its way, or ready (not failed)."""
        task = self._speculation
        if task is None or task.cancelled():
            return False
        return not task.done() or task.exception() is None

    def speculated_text(self) -> str | None:
        """The speculative transcript's words once ready; None while the engine is at it (or it failed)."""
        task = self._speculation
        if task is None or not task.done() or task.cancelled() or task.exception() is not None:
            return None
        return task.result().text

    @property
    def finished_early(self) -> bool:
        """A speculative transcript is ready and its words end the turn (``ends_turn``)."""
        task = self._speculation
        if task is None or not task.done() or task.cancelled() or task.exception() is not None:
            return False
        return self._ends_turn(task.result().text)

    def end(self, audio: bytes, *, last_speech_at: float, decided_at: float) -> None:
        self.audio = audio
        self.last_speech_at = last_speech_at
        self.decided_at = decided_at

    async def transcribe(self) -> Transcript:
        try:
            guess, self._speculation = self._speculation, None
            if guess is not None:  # only silence came after the pause: the guess heard it all
                try:
                    return await guess
                except Exception:
                    logger.warning("speculative transcription failed; transcribing again", exc_info=True)
            if self._stream is not None and self._resampler is not None:
                self._stream.push(self._resampler.flush())
                return await self._stream.finish()
            pcm = resample(self.audio, self._input_rate, self._stt.capabilities.sample_rate)
            return await self._heard(pcm)
        finally:
            await self.aclose()

    async def _heard(self, pcm: bytes) -> Transcript:
        """``pcm`` transcribed; with :attr:`recheck`, one or two words it does not want are transcribed
        again with its prompt, and the second words kept if it wants them."""
        recheck = self.recheck
        rate = self._stt.capabilities.sample_rate
        prompted = recheck is not None and self._stt.capabilities.prompt
        first_task = asyncio.ensure_future(self._stt.transcribe(pcm, language=self._language))
        early: asyncio.Task[Transcript | None] | None = None
        if prompted and recheck is not None and recheck.early and len(pcm) <= 2 * rate * SHORT_UTTERANCE_S:
            early = asyncio.create_task(self._hear_early(pcm, recheck, first_task), name="stt-early")
            early.add_done_callback(_retrieve)
        try:
            first = await first_task
            logger.debug("heard %r in %d ms of audio", first.text, len(pcm) * 500 // rate)
            if recheck is None or not prompted or not 0 < len(first.text.split()) <= 2:
                return first
            if recheck.wanted(first.text):
                return first
            try:
                again = await early if early is not None else None
                if again is None:
                    again = await self._stt.transcribe(pcm, language=self._language, prompt=recheck.prompt)
            except Exception:  # the first words stand
                logger.warning("could not transcribe %r again", first.text, exc_info=True)
                return first
            if not recheck.wanted(again.text):
                logger.debug("%r heard again as %r: kept", first.text, again.text)
                return first
            logger.info("%r heard again as %r", first.text, again.text)
            return again
        finally:
            for task in (first_task, early):
                if task is not None and not task.done():
                    task.cancel()

    async def _hear_early(
        self, pcm: bytes, recheck: Recheck, first: asyncio.Future[Transcript]
    ) -> Transcript | None:
        """The second hearing, asked when the first is slow (None if it was not); ``recheck.early`` is
        told its words if they are wanted and the first has still not come."""
        waited: asyncio.Future[Any] = asyncio.ensure_future(self._clock.sleep(SLOW_HEARING_S))
        try:
            await asyncio.wait((first, waited), return_when=asyncio.FIRST_COMPLETED)
        finally:
            waited.cancel()
        if first.done():
            return None
        again = await self._stt.transcribe(pcm, language=self._language, prompt=recheck.prompt)
        if not first.done() and recheck.early is not None and recheck.wanted(again.text):
            logger.debug("heard early with the prompt as %r", again.text)
            recheck.early(again.text)
        return again

    async def aclose(self) -> None:
        self.discard_speculation()
        task, self._interim_task = self._interim_task, None
        if task is not None:
            task.cancel()
            await asyncio.wait({task})  # unlike `await task`, never swallows our own cancellation
        stream, self._stream = self._stream, None
        if stream is not None:
            await stream.aclose()

    @staticmethod
    async def _forward_interim(stream: STTStream, on_interim: InterimHandler) -> None:
        try:
            async for result in stream.interim():
                if result.text:
                    await on_interim(result)
        except Exception:
            logger.exception("interim transcripts failed")


def _retrieve(task: asyncio.Task[Any]) -> None:
    """A dropped guess's failure is not an error anyone must see."""
    if not task.cancelled():
        task.exception()
