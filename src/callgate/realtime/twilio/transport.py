"""The call's side of a Media Stream: agent audio out as μ-law ``media``, a ``mark`` after each sentence,
``clear`` on barge-in, and the end of the call told to Twilio (hang up, or ``<Dial>`` on a transfer).

The session speaks RTVI to its transport; this one reads the few messages that matter on a phone line
(``bot-started-speaking``, ``bot-tts-text``, ``bot-stopped-speaking``, ``bot-interrupted``, and the
``transfer`` and ``call-ended`` server messages) and drops the rest: a phone has no data channel.

What was heard: Twilio echoes a ``mark`` once the audio before it has played, and echoes every pending
mark at once when a ``clear`` empties its buffer. So a sentence counts as heard when its mark came back
*before* callgate sent ``clear`` (or before the stream stopped); :meth:`heard` cuts an interrupted agent
turn back to those sentences. A mark that Twilio played but whose echo crossed our ``clear`` on the wire
is not counted: the transcript may miss a sentence the caller heard, never the other way round.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass
from typing import Any, Protocol

from callgate.errors import CallgateError
from callgate.realtime.media import g711
from callgate.realtime.twilio import media, twiml
from callgate.realtime.twilio.rest import TwilioRest

__all__ = ["TwilioTransport"]

log = logging.getLogger(__name__)


class SocketLike(Protocol):
    async def send_text(self, data: str) -> None: ...

    async def close(self, code: int = 1000, reason: str | None = None) -> None: ...


@dataclass(slots=True)
class _Sentence:
    text: str
    mark: str | None = None
    played: bool = False
    dropped: bool = False


class TwilioTransport:
    """A :class:`~callgate.realtime.session.CallTransport` over one Media Stream (agent audio at 8 kHz)."""

    def __init__(
        self, ws: SocketLike, *, stream_sid: str, call_sid: str, rest: TwilioRest | None, call_id: str
    ) -> None:
        self._ws = ws
        self._stream_sid = stream_sid
        self.call_sid = call_sid
        self._rest = rest
        self._call_id = call_id
        self._send_lock = asyncio.Lock()
        self._closed = False
        self.far_end_gone = False
        """Twilio stopped the stream (the caller hung up): nothing to hang up."""
        self._sentences: list[_Sentence] = []
        self._marks: dict[str, _Sentence] = {}
        self._next_mark = 0
        self._transfer_target: str | None = None
        self._end_reason: str | None = None

    @property
    def closed(self) -> bool:
        return self._closed

    # ------------------------------------------------------------------ CallTransport

    async def send_audio(self, pcm16: bytes) -> None:
        await self._send(media.media(self._stream_sid, g711.encode(pcm16, "PCMU")))

    async def send_message(self, text: str) -> None:
        try:
            msg: dict[str, Any] = json.loads(text)
        except ValueError:
            return
        kind, data = msg.get("type"), msg.get("data") or {}
        if kind == "bot-started-speaking":
            self._sentences = []  # a new reply
        elif kind == "bot-tts-text":
            await self._mark_sentence()
            self._sentences.append(_Sentence(str(data.get("text", ""))))
        elif kind == "bot-stopped-speaking":
            await self._mark_sentence()
        elif kind == "bot-interrupted":
            for sentence in self._sentences:
                sentence.dropped = not sentence.played
            await self._send(media.clear(self._stream_sid))
        elif kind == "server-message" and data.get("type") == "transfer":
            self._transfer_target = str(data.get("target") or "") or None
        elif kind == "server-message" and data.get("type") == "call-ended":
            self._end_reason = str(data.get("reason") or "")

    async def close(self, code: int, reason: str) -> None:
        """The call is over: tell Twilio (hang up, or dial the transfer target), close the stream."""
        if self._closed:
            return
        self._closed = True
        if not self.far_end_gone:
            await self._end_on_twilio()
        with contextlib.suppress(Exception):
            await self._ws.close(code=code, reason=reason[:120])

    # ------------------------------------------------------------------ from the pump

    def played(self, name: str) -> None:
        """Twilio echoed mark ``name``."""
        sentence = self._marks.pop(name, None)
        if sentence is not None and not sentence.dropped:
            sentence.played = True

    def stopped(self) -> None:
        """Twilio ended the stream: pending marks will never be confirmed."""
        self.far_end_gone = True
        for sentence in self._sentences:
            sentence.dropped = not sentence.played

    def heard(self, estimate: str) -> str:
        """What the caller heard of the interrupted reply whose played-out estimate is ``estimate``:
        the sentences Twilio confirmed, if that is less (see the module docstring)."""
        confirmed: list[str] = []
        for sentence in self._sentences:
            if not sentence.played:
                break
            confirmed.append(sentence.text)
        text = " ".join(confirmed)
        return text if len(text) < len(estimate) else estimate

    # ------------------------------------------------------------------ internals

    async def _mark_sentence(self) -> None:
        """Follow the sentence just sent with a mark (once)."""
        if not self._sentences or self._sentences[-1].mark is not None or self._sentences[-1].dropped:
            return
        sentence = self._sentences[-1]
        self._next_mark += 1
        sentence.mark = f"s{self._next_mark}"
        self._marks[sentence.mark] = sentence
        await self._send(media.mark(self._stream_sid, sentence.mark))

    async def _send(self, text: str) -> None:
        if self._closed:
            return
        try:
            async with self._send_lock:
                await self._ws.send_text(text)
        except Exception:  # Twilio went away mid-send; the receive loop reports it
            self._closed = True

    async def _end_on_twilio(self) -> None:
        if self._rest is None:
            return
        fields = [("Status", "completed")]
        if self._end_reason == "transferred" and self._transfer_target:
            dial = twiml.dial(self._transfer_target)
            if dial is not None:
                fields = [("Twiml", dial)]
            else:
                log.warning(
                    "transfer target %r cannot be dialled on Twilio; hanging up",
                    self._transfer_target,
                    extra={"call": self._call_id},
                )
        try:
            await self._rest.update_call(self.call_sid, fields)
        except CallgateError as exc:
            log.warning("could not end the Twilio call: %s", exc.detail, extra={"call": self._call_id})
