"""Deepgram live streaming: one WebSocket to ``{base_url}/v1/listen`` per caller utterance.

The wire protocol (Deepgram's documented streaming API): the query string carries the options
(``model``, ``encoding=linear16``, ``sample_rate``, ``channels``, ``language``, ``interim_results``,
``endpointing``, ``vad_events``, ``punctuate``/``smart_format``); ``Authorization: Token <key>``
authenticates the handshake. The client sends raw PCM as binary frames and JSON control messages
(``Finalize`` flushes what is buffered, ``CloseStream`` ends the stream). The server sends ``Results``
(``is_final`` for a finished segment, ``speech_final`` when its endpointing heard the caller stop,
``from_finalize`` for the answer to ``Finalize``), ``SpeechStarted``, ``UtteranceEnd`` and ``Metadata``.
It reports a refused handshake with an HTTP status, and an error mid-stream with a close frame whose
code and reason (``DATA-0000``, ``NET-0001`` …) say what went wrong.

The utterance's final transcript is every ``is_final`` segment joined, complete once the answer to
``Finalize`` arrives (or the server closes the stream normally). Interim results are the final
segments so far plus the newest partial one. Deepgram's endpointing (``speech_final``) is kept on the
stream as :attr:`DeepgramStream.endpointed`; the call's own turn detection decides when a turn ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlencode

from pydantic import SecretStr
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from callgate.errors import ProviderError, ProviderTimeout
from callgate.pipeline.interfaces import STT, STTCapabilities, STTStream, Transcript
from callgate.providers._cloud import closed_error, ws_connect

__all__ = ["DeepgramSTT", "DeepgramStream"]

log = logging.getLogger(__name__)
VENDOR = "Deepgram"


class DeepgramSTT(STT):
    """Streaming STT; :meth:`transcribe` streams a whole utterance through one stream."""

    def __init__(
        self,
        *,
        api_key: SecretStr | None,
        model: str = "nova-3",
        base_url: str = "wss://api.deepgram.com",
        endpointing_ms: int = 300,
        smart_format: bool = True,
        timeout: float = 10.0,
    ) -> None:
        self._key = api_key
        self.model = model
        self._base_url = base_url.rstrip("/")
        self._endpointing_ms = endpointing_ms
        self._smart_format = smart_format
        self.timeout = timeout
        self.capabilities = STTCapabilities(sample_rate=16000, streaming=True)

    def url(self, language: str) -> str:
        query = {
            "model": self.model,
            "encoding": "linear16",
            "sample_rate": self.capabilities.sample_rate,
            "channels": 1,
            "language": language,
            "interim_results": "true",
            "endpointing": self._endpointing_ms,
            "vad_events": "true",
            "punctuate": "true",
            "smart_format": "true" if self._smart_format else "false",
        }
        return f"{self._base_url}/v1/listen?{urlencode(query)}"

    def headers(self) -> dict[str, str]:
        if self._key is None or not self._key.get_secret_value():
            return {}
        return {"Authorization": f"Token {self._key.get_secret_value()}"}

    def stream(self, *, language: str = "en") -> DeepgramStream:
        return DeepgramStream(self, language=language)

    async def transcribe(self, pcm16: bytes, *, language: str = "en", prompt: str = "") -> Transcript:
        stream = self.stream(language=language)
        try:
            stream.push(pcm16)
            return await stream.finish()
        finally:
            await stream.aclose()


class DeepgramStream(STTStream):
    """One utterance's stream. Connecting starts at once, while the caller is still speaking."""

    def __init__(self, owner: DeepgramSTT, *, language: str) -> None:
        self._owner, self._language = owner, language
        self._outgoing: asyncio.Queue[bytes | str | None] = asyncio.Queue()
        self._finals: list[str] = []
        self._partial = ""
        self._confidences: list[float] = []
        self._interims: asyncio.Queue[Transcript | None] = asyncio.Queue()
        self._finalized = asyncio.Event()
        self._failure: ProviderError | None = None
        self.endpointed = False
        """Deepgram's endpointing heard the caller stop (a ``speech_final`` result)."""
        self._task = asyncio.create_task(self._run(), name="deepgram-stream")

    def push(self, pcm16: bytes) -> None:
        if pcm16:
            self._outgoing.put_nowait(pcm16)

    async def interim(self) -> AsyncIterator[Transcript]:
        while (item := await self._interims.get()) is not None:
            yield item

    async def finish(self) -> Transcript:
        self._outgoing.put_nowait(json.dumps({"type": "Finalize"}))
        try:
            async with asyncio.timeout(self._owner.timeout):
                await self._finalized.wait()
        except TimeoutError as exc:
            raise ProviderTimeout(f"{VENDOR} gave no final transcript in {self._owner.timeout:g} s") from exc
        if self._failure is not None:
            raise self._failure
        confidence = min(self._confidences) if self._confidences else None
        return Transcript(text=" ".join(self._finals).strip(), confidence=confidence, language=self._language)

    async def aclose(self) -> None:
        self._outgoing.put_nowait(json.dumps({"type": "CloseStream"}))
        self._outgoing.put_nowait(None)
        try:
            await asyncio.wait({self._task}, timeout=1.0)  # let CloseStream reach the server
        finally:
            self._task.cancel()
            await asyncio.wait({self._task})

    async def _run(self) -> None:
        try:
            socket = await ws_connect(
                VENDOR,
                self._owner.url(self._language),
                headers=self._owner.headers(),
                open_timeout=self._owner.timeout,
            )
            async with socket:
                sender = asyncio.create_task(self._send(socket), name="deepgram-send")
                try:
                    async for message in socket:
                        if isinstance(message, str):
                            self._handle(json.loads(message))
                finally:
                    sender.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await sender
        except ConnectionClosed as exc:
            if exc.rcvd is None or exc.rcvd.code != 1000:
                self._failure = closed_error(VENDOR, exc)
        except ProviderError as exc:
            self._failure = exc
        except Exception as exc:  # a message we cannot read: finish() must hear of it, not hang
            self._failure = ProviderError(f"{VENDOR} stream failed: {exc!r}")
        finally:
            self._finalized.set()  # a normal close ends the utterance too: finish() has its answer
            self._interims.put_nowait(None)

    async def _send(self, socket: ClientConnection) -> None:
        while (item := await self._outgoing.get()) is not None:
            await socket.send(item)

    def _handle(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "Results":
            alternatives = (message.get("channel") or {}).get("alternatives") or [{}]
            best = alternatives[0]
            text = str(best.get("transcript") or "").strip()
            if message.get("is_final"):
                if text:
                    self._finals.append(text)
                    if isinstance(best.get("confidence"), int | float):
                        self._confidences.append(float(best["confidence"]))
                self._partial = ""
            else:
                self._partial = text
            if message.get("speech_final"):
                self.endpointed = True
            so_far = " ".join([*self._finals, self._partial]).strip()
            if so_far:
                self._interims.put_nowait(
                    Transcript(text=so_far, is_final=bool(message.get("is_final")), language=self._language)
                )
            if message.get("from_finalize"):
                self._finalized.set()
        elif kind == "UtteranceEnd":
            self.endpointed = True
        elif kind == "Error":  # an error message before the close frame (some API versions send one)
            detail = message.get("description") or message.get("message") or "unknown error"
            self._failure = ProviderError(f"{VENDOR} error: {detail}")
            self._finalized.set()
        # SpeechStarted, Metadata: nothing to do
