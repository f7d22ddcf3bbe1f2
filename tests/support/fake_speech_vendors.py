"""Local stand-ins for cloud speech vendors, each speaking its documented wire protocol over real
HTTP/WebSocket (uvicorn): Deepgram live streaming, ElevenLabs input streaming, Cartesia's TTS WebSocket,
and an OpenAI-compatible server's ``/v1/audio/transcriptions`` and ``/v1/audio/speech``.

Each fake has a ``mode`` a test sets: ``"ok"``, ``"auth"`` (the vendor's refusal of a bad key),
``"error"`` (its error frame mid-stream), ``"silent"`` (accepts, then never answers). The transcript a
fake "hears" is ``text``; the audio a TTS fake "speaks" is 20 ms chunks of a ramp, ``chunks`` of them.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from tests.support.fake_server import serving

KEY = "vendor-test-key"


def pcm_chunk(rate: int, i: int = 0) -> bytes:
    samples = rate // 50
    return b"".join(
        ((i * 97 + n * 31) % 2000 - 1000).to_bytes(2, "little", signed=True) for n in range(samples)
    )


class _Fake:
    def __init__(self) -> None:
        self.mode = "ok"
        self.text = "I would like to book a table"
        self.chunks = 3
        self.connections = 0
        self.received: list[Any] = []
        self.headers: list[dict[str, str]] = []
        self.query: list[dict[str, str]] = []
        self.base_url = ""


class FakeDeepgram(_Fake):
    """``/v1/listen``: interim results while audio arrives, final ones on Finalize, Metadata and a
    normal close on CloseStream; a bad key is a 401 handshake; ``error`` closes 1008 ``DATA-0000``."""

    async def listen(self, ws: WebSocket) -> None:
        self.connections += 1
        self.headers.append(dict(ws.headers))
        self.query.append(dict(ws.query_params))
        if ws.headers.get("authorization") != f"Token {KEY}":
            await ws.send_denial_response(
                JSONResponse({"err_code": "INVALID_AUTH", "err_msg": "Invalid credentials."}, 401)
            )
            return
        await ws.accept()
        audio = 0
        words = self.text.split()
        try:
            while True:
                message = await ws.receive()
                if message["type"] == "websocket.disconnect":
                    return
                if message.get("bytes"):
                    audio += len(message["bytes"])
                    self.received.append(len(message["bytes"]))
                    if self.mode == "error" and audio > 6400:
                        await ws.close(code=1008, reason="DATA-0000: the payload cannot be decoded as audio")
                        return
                    if self.mode == "ok" and audio >= 3200:
                        heard = " ".join(words[: max(1, min(len(words), audio // 6400))])
                        await ws.send_json(_results(heard, is_final=False))
                    continue
                control = json.loads(message.get("text") or "{}")
                self.received.append(control)
                if self.mode == "silent":
                    continue
                if control.get("type") == "Finalize":
                    await ws.send_json(
                        _results(self.text, is_final=True, speech_final=True, from_finalize=True)
                    )
                elif control.get("type") == "CloseStream":
                    await ws.send_json({"type": "Metadata", "request_id": "req-1", "duration": audio / 32000})
                    await ws.close(code=1000)
                    return
        except WebSocketDisconnect:
            return

    def app(self) -> Starlette:
        return Starlette(routes=[WebSocketRoute("/v1/listen", self.listen)])


def _results(
    text: str, *, is_final: bool, speech_final: bool = False, from_finalize: bool = False
) -> dict[str, Any]:
    return {
        "type": "Results",
        "channel_index": [0, 1],
        "duration": 1.0,
        "start": 0.0,
        "is_final": is_final,
        "speech_final": speech_final,
        "from_finalize": from_finalize,
        "channel": {"alternatives": [{"transcript": text, "confidence": 0.93, "words": []}]},
    }


class FakeElevenLabs(_Fake):
    """``/v1/text-to-speech/{voice}/stream-input``: audio messages after a flush or the end of input,
    then ``isFinal``; a bad key gets an error message and a 1008 close; ``error`` fails after one chunk."""

    async def stream_input(self, ws: WebSocket) -> None:
        self.connections += 1
        self.headers.append(dict(ws.headers))
        self.query.append(dict(ws.query_params) | {"voice": ws.path_params["voice"]})
        await ws.accept()
        rate = int(ws.query_params.get("output_format", "pcm_16000").split("_")[1])
        try:
            if ws.headers.get("xi-api-key") != KEY:
                await ws.send_json({"message": "Invalid API key", "error": "invalid_api_key", "code": 1008})
                await ws.close(code=1008, reason="Invalid API key")
                return
            while True:
                message = json.loads(await ws.receive_text())
                self.received.append(message)
                if message.get("text") == "":
                    break
            if self.mode == "silent":
                await asyncio.sleep(3600)
            for i in range(self.chunks):
                await ws.send_json(
                    {
                        "audio": base64.b64encode(pcm_chunk(rate, i)).decode(),
                        "isFinal": None,
                        "normalizedAlignment": None,
                    }
                )
                if self.mode == "error":
                    await ws.send_json({"message": "Quota exceeded", "error": "quota_exceeded", "code": 1008})
                    await ws.close(code=1008, reason="quota_exceeded")
                    return
            await ws.send_json({"isFinal": True})
            await ws.close()
        except WebSocketDisconnect:
            return

    def app(self) -> Starlette:
        return Starlette(
            routes=[WebSocketRoute("/v1/text-to-speech/{voice}/stream-input", self.stream_input)]
        )


class FakeCartesia(_Fake):
    """``/tts/websocket``: chunk messages then done; a bad key is a 401 handshake; ``error`` is an error
    message (``done: true``, ``status_code``) after one chunk."""

    async def websocket(self, ws: WebSocket) -> None:
        self.connections += 1
        self.headers.append(dict(ws.headers))
        if ws.headers.get("x-api-key") != KEY:
            await ws.send_denial_response(JSONResponse({"error": "Invalid API key"}, 401))
            return
        await ws.accept()
        try:
            request = json.loads(await ws.receive_text())
            self.received.append(request)
            if self.mode == "silent":
                await asyncio.sleep(3600)
            context, rate = request["context_id"], request["output_format"]["sample_rate"]
            for i in range(self.chunks):
                data = base64.b64encode(pcm_chunk(rate, i)).decode()
                await ws.send_json(
                    {
                        "type": "chunk",
                        "data": data,
                        "done": False,
                        "status_code": 206,
                        "step_time": 12,
                        "context_id": context,
                    }
                )
                if self.mode == "error":
                    await ws.send_json(
                        {
                            "type": "error",
                            "done": True,
                            "status_code": 500,
                            "error": "Internal error: model crashed",
                            "context_id": context,
                        }
                    )
                    return
            await ws.send_json({"type": "done", "done": True, "status_code": 206, "context_id": context})
            await asyncio.sleep(0.05)
        except WebSocketDisconnect:
            return

    def app(self) -> Starlette:
        return Starlette(routes=[WebSocketRoute("/tts/websocket", self.websocket)])


class FakeOpenAIAudio(_Fake):
    """``/v1/audio/transcriptions`` (multipart WAV in, ``{"text"}`` out) and ``/v1/audio/speech``
    (streamed raw PCM); a bad key is a 401 with OpenAI's error body, ``error`` a 500."""

    def _refusal(self, request: Request) -> Response | None:
        self.connections += 1
        self.headers.append(dict(request.headers))
        if request.headers.get("authorization") != f"Bearer {KEY}":
            body = {"error": {"message": "Incorrect API key provided", "type": "invalid_request_error"}}
            return JSONResponse(body, status_code=401)
        if self.mode == "error":
            return JSONResponse(
                {"error": {"message": "The server had an error", "type": "server_error"}}, 500
            )
        return None

    async def transcriptions(self, request: Request) -> Response:
        self.received.append(_multipart(request.headers["content-type"], await request.body()))
        refusal = self._refusal(request)
        if refusal is not None:
            return refusal
        if self.mode == "silent":
            await asyncio.sleep(3600)
        return JSONResponse({"text": " " + self.text})

    async def speech(self, request: Request) -> Response:
        self.received.append(await request.json())
        refusal = self._refusal(request)
        if refusal is not None:
            return refusal

        async def body() -> Any:
            if self.mode == "silent":
                await asyncio.sleep(3600)
            for i in range(self.chunks):
                chunk = pcm_chunk(24000, i)
                yield chunk[:301]  # odd sizes: samples split across HTTP chunks
                yield chunk[301:]

        return StreamingResponse(body(), media_type="audio/pcm")

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/v1/audio/transcriptions", self.transcriptions, methods=["POST"]),
                Route("/v1/audio/speech", self.speech, methods=["POST"]),
            ]
        )


def _multipart(content_type: str, body: bytes) -> dict[str, Any]:
    """The fields of a multipart/form-data body (a tiny parser: the fake must not need one installed)."""
    boundary = content_type.split("boundary=")[1].strip('"').encode()
    fields: dict[str, Any] = {}
    for part in body.split(b"--" + boundary)[1:-1]:
        head, _, value = part.strip(b"\r\n").partition(b"\r\n\r\n")
        name = head.split(b'name="')[1].split(b'"')[0].decode()
        fields[name] = value if name == "file" else value.decode()
    return fields


@pytest.fixture
def fake_deepgram() -> Iterator[FakeDeepgram]:
    fake = FakeDeepgram()
    with serving(fake.app()) as address:
        fake.base_url = f"ws://{address}"
        yield fake


@pytest.fixture
def fake_elevenlabs() -> Iterator[FakeElevenLabs]:
    fake = FakeElevenLabs()
    with serving(fake.app()) as address:
        fake.base_url = f"ws://{address}"
        yield fake


@pytest.fixture
def fake_cartesia() -> Iterator[FakeCartesia]:
    fake = FakeCartesia()
    with serving(fake.app()) as address:
        fake.base_url = f"ws://{address}"
        yield fake


@pytest.fixture
def fake_openai_audio() -> Iterator[FakeOpenAIAudio]:
    fake = FakeOpenAIAudio()
    with serving(fake.app()) as address:
        fake.base_url = f"http://{address}/v1"
        yield fake
