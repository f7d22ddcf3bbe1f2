"""A local fake of Twilio Programmable Voice, speaking its documented wire protocols.

- :class:`FakeTwilio`: the REST API (``/2010-04-01/Accounts/{sid}/Calls.json`` create, ``Calls/{sid}.json``
  update, ``Calls/{sid}/Recordings.json``) on Starlette/uvicorn: basic auth checked, form bodies recorded,
  JSON Call resources answered, Twilio's error shape (``{"code", "message", "status"}``) for refusals. It
  also does what Twilio's side does: signs webhooks (:meth:`FakeTwilio.post_webhook`, with the ``twilio``
  package's ``RequestValidator``), posts status callbacks, and answers a created call by opening the
  Media Stream its TwiML names.
- :class:`MediaStream`: a Media Streams client that connects to callgate's media WebSocket like Twilio:
  ``connected``, ``start`` with ``customParameters``, 20 ms μ-law ``media`` frames at real-time pace,
  ``dtmf``, ``stop``. It plays what it receives like Twilio's buffer does — queued audio plays in real
  time after ``playout_delay_s``; a ``mark`` is echoed when the audio before it has played; ``clear``
  drops the unplayed audio and echoes every pending mark at once.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import re
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl
from xml.etree import ElementTree

import httpx
import numpy as np
import soxr
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from twilio.request_validator import RequestValidator
from websockets.asyncio.client import ClientConnection, connect

from callgate.realtime.media import g711
from tests.support.services import free_port

FRAME = 160  # 20 ms of μ-law at 8 kHz


def ulaw_of_pcm16k(pcm16: bytes) -> bytes:
    """16 kHz PCM16 speech as Twilio would carry it: 8 kHz μ-law."""
    samples = np.frombuffer(pcm16, dtype=np.int16)
    low = soxr.resample(samples, 16000, 8000).astype(np.int16)
    return g711.encode(low.tobytes(), "PCMU")


def pcm_of_ulaw(ulaw: bytes) -> np.ndarray:
    return np.frombuffer(g711.decode(ulaw, "PCMU"), dtype=np.int16)


def sign(auth_token: str, url: str, params: list[tuple[str, str]]) -> str:
    """``X-Twilio-Signature`` as Twilio computes it (``RequestValidator.compute_signature``)."""

    class Multi(dict[str, list[str]]):
        def getlist(self, key: str) -> list[str]:
            return self[key]

    multi = Multi()
    for key, value in params:
        multi.setdefault(key, []).append(value)
    signature: str = RequestValidator(auth_token).compute_signature(url, multi)
    return signature


@dataclass
class ApiRequest:
    method: str
    path: str
    form: list[tuple[str, str]]
    auth: tuple[str, str] | None

    def field(self, name: str) -> str | None:
        return next((v for k, v in self.form if k == name), None)

    def fields(self, name: str) -> list[str]:
        return [v for k, v in self.form if k == name]


@dataclass
class FakeCall:
    sid: str
    to: str
    from_: str
    twiml: str | None
    url: str | None
    status_callback: str | None
    status: str = "queued"
    updates: list[list[tuple[str, str]]] = field(default_factory=list)


def stream_of(twiml: str) -> tuple[str, dict[str, str]]:
    """The ``<Connect><Stream url>`` of a TwiML document and its ``<Parameter>`` values."""
    root = ElementTree.fromstring(twiml)
    stream = root.find("./Connect/Stream")
    assert stream is not None, twiml
    params = {p.attrib["name"]: p.attrib["value"] for p in stream.findall("Parameter")}
    return stream.attrib["url"], params


class FakeTwilio:
    def __init__(self, *, account_sid: str | None = None, auth_token: str | None = None) -> None:
        self.account_sid = account_sid or "AC" + secrets.token_hex(16)
        self.auth_token = auth_token or secrets.token_hex(16)
        self.requests: list[ApiRequest] = []
        self.calls: dict[str, FakeCall] = {}
        self.refuse_create: tuple[int, int, str] | None = None
        """``(http status, twilio code, message)`` to answer the next create with."""
        self.changed = asyncio.Event()
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None
        self.url = ""

    # ------------------------------------------------------------------ server

    async def __aenter__(self) -> FakeTwilio:
        base = "/2010-04-01/Accounts/{account}/Calls"
        app = Starlette(
            routes=[
                Route(base + ".json", self._create, methods=["POST"]),
                Route(base + "/{call}.json", self._update, methods=["POST"]),
                Route(base + "/{call}/Recordings.json", self._recording, methods=["POST"]),
            ]
        )
        port = free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False)
        self._server = uvicorn.Server(config)
        self._task = asyncio.create_task(self._server.serve())
        while not self._server.started:
            if self._task.done():
                self._task.result()
            await asyncio.sleep(0.02)
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None and self._task is not None
        self._server.should_exit = True
        await self._task

    async def _request(self, request: Request) -> tuple[ApiRequest, Response | None]:
        form = parse_qsl((await request.body()).decode(), keep_blank_values=True)
        auth = None
        header = request.headers.get("authorization", "")
        if header.startswith("Basic "):
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
            auth = (user, password)
        seen = ApiRequest(request.method, request.url.path, form, auth)
        self.requests.append(seen)
        self.changed.set()
        if auth != (self.account_sid, self.auth_token) or request.path_params["account"] != self.account_sid:
            return seen, JSONResponse(
                {"code": 20003, "message": "Authenticate", "more_info": "", "status": 401}, status_code=401
            )
        return seen, None

    def _resource(self, call: FakeCall) -> dict[str, Any]:
        return {
            "sid": call.sid,
            "account_sid": self.account_sid,
            "to": call.to,
            "from": call.from_,
            "status": call.status,
            "direction": "outbound-api",
            "uri": f"/2010-04-01/Accounts/{self.account_sid}/Calls/{call.sid}.json",
        }

    async def _create(self, request: Request) -> Response:
        seen, refused = await self._request(request)
        if refused is not None:
            return refused
        to, from_ = seen.field("To"), seen.field("From")
        if not to or not from_ or not (seen.field("Twiml") or seen.field("Url")):
            return JSONResponse(
                {"code": 21201, "message": "To, From and Twiml or Url are required", "status": 400},
                status_code=400,
            )
        if self.refuse_create is not None:
            status, code, message = self.refuse_create
            self.refuse_create = None
            return JSONResponse({"code": code, "message": message, "status": status}, status_code=status)
        call = FakeCall(
            sid="CA" + secrets.token_hex(16),
            to=to,
            from_=from_,
            twiml=seen.field("Twiml"),
            url=seen.field("Url"),
            status_callback=seen.field("StatusCallback"),
        )
        self.calls[call.sid] = call
        return JSONResponse(self._resource(call), status_code=201)

    async def _update(self, request: Request) -> Response:
        seen, refused = await self._request(request)
        if refused is not None:
            return refused
        call = self.calls.get(request.path_params["call"])
        if call is None:
            return JSONResponse(
                {"code": 20404, "message": "The requested resource was not found", "status": 404},
                status_code=404,
            )
        call.updates.append(seen.form)
        if (status := seen.field("Status")) is not None:
            call.status = status
        return JSONResponse(self._resource(call))

    async def _recording(self, request: Request) -> Response:
        _, refused = await self._request(request)
        if refused is not None:
            return refused
        sid = "RE" + secrets.token_hex(16)
        return JSONResponse(
            {"sid": sid, "call_sid": request.path_params["call"], "status": "in-progress"}, 201
        )

    async def wait_for(self, predicate: Any, *, timeout: float = 30.0) -> None:
        async with asyncio.timeout(timeout):
            while not predicate():
                self.changed.clear()
                await self.changed.wait()

    def add_inbound_call(self, *, to: str, from_: str) -> FakeCall:
        call = FakeCall("CA" + secrets.token_hex(16), to, from_, None, None, None, status="ringing")
        self.calls[call.sid] = call
        return call

    # ------------------------------------------------------------------ Twilio's requests to the app

    async def post_webhook(
        self,
        url: str,
        params: list[tuple[str, str]],
        *,
        signature: str | None = None,
        client: httpx.AsyncClient | None = None,
    ) -> httpx.Response:
        """POST ``params`` to ``url`` form-encoded, signed like Twilio (or with ``signature``), over
        ``client`` (e.g. an in-process app's) or a new one."""
        signed = signature if signature is not None else sign(self.auth_token, url, params)
        headers = {"X-Twilio-Signature": signed}
        if client is not None:
            return await client.post(url, data=_form(params), headers=headers)
        async with httpx.AsyncClient(timeout=30) as own:
            return await own.post(url, data=_form(params), headers=headers)

    def voice_params(self, call: FakeCall) -> list[tuple[str, str]]:
        return [
            ("AccountSid", self.account_sid),
            ("ApiVersion", "2010-04-01"),
            ("CallSid", call.sid),
            ("CallStatus", "ringing"),
            ("Called", call.to),
            ("Caller", call.from_),
            ("Direction", "inbound"),
            ("From", call.from_),
            ("FromCountry", "US"),
            ("To", call.to),
            ("ToCountry", "US"),
        ]

    async def status_callback(
        self, call: FakeCall, status: str, *, client: httpx.AsyncClient | None = None
    ) -> httpx.Response:
        assert call.status_callback is not None
        call.status = status
        params = [
            ("AccountSid", self.account_sid),
            ("ApiVersion", "2010-04-01"),
            ("CallSid", call.sid),
            ("CallStatus", status),
            ("Direction", "outbound-api"),
            ("From", call.from_),
            ("To", call.to),
            ("SequenceNumber", "0"),
            ("Timestamp", time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime())),
        ]
        return await self.post_webhook(call.status_callback, params, client=client)

    def media_stream(self, call: FakeCall, twiml: str | None = None, **options: Any) -> MediaStream:
        """The Media Stream Twilio opens when ``call`` runs ``twiml`` (default: its own)."""
        url, params = stream_of(twiml or call.twiml or "")
        return MediaStream(url, params, account_sid=self.account_sid, call_sid=call.sid, **options)


def _form(params: list[tuple[str, str]]) -> dict[str, str | list[str]]:
    out: dict[str, str | list[str]] = {}
    for key, value in params:
        prior = out.get(key)
        out[key] = value if prior is None else [*([prior] if isinstance(prior, str) else prior), value]
    return out


# --- Media Streams -----------------------------------------------------------------------------------


@dataclass
class Got:
    events: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    audio: bytearray = field(default_factory=bytearray)
    """Every μ-law byte received."""
    echoed: list[tuple[float, str, bool]] = field(default_factory=list)
    """Marks echoed: (time, name, played) — played False for marks flushed by a clear."""


class MediaStream:
    def __init__(
        self,
        url: str,
        parameters: dict[str, str],
        *,
        account_sid: str,
        call_sid: str,
        playout_delay_s: float = 0.0,
    ) -> None:
        self.url = url
        self.parameters = parameters
        self.account_sid = account_sid
        self.call_sid = call_sid
        self.stream_sid = "MZ" + secrets.token_hex(16)
        self.delay = playout_delay_s
        self.got = Got()
        self.changed = asyncio.Event()
        self.ws: ClientConnection | None = None
        self._seq = itertools.count(1)
        self._chunk = itertools.count(1)
        self._sent_ms = 0
        self._play_end = 0.0
        self._pending_marks: list[tuple[float, str]] = []
        self._tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> MediaStream:
        self.ws = await connect(self.url, max_size=2**20)
        self._tasks = [asyncio.create_task(self._read()), asyncio.create_task(self._play_marks())]
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.ws is not None:
            await self.ws.close()

    # ------------------------------------------------------------------ sending, like Twilio

    async def send_json(self, obj: dict[str, Any]) -> None:
        assert self.ws is not None
        await self.ws.send(json.dumps(obj))

    async def send_raw(self, frame: str | bytes) -> None:
        assert self.ws is not None
        await self.ws.send(frame)

    async def begin(self, *, parameters: dict[str, str] | None = None) -> None:
        """``connected`` then ``start``."""
        await self.send_json({"event": "connected", "protocol": "Call", "version": "1.0.0"})
        await self.send_json(
            {
                "event": "start",
                "sequenceNumber": str(next(self._seq)),
                "start": {
                    "accountSid": self.account_sid,
                    "streamSid": self.stream_sid,
                    "callSid": self.call_sid,
                    "tracks": ["inbound"],
                    "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
                    "customParameters": self.parameters if parameters is None else parameters,
                },
                "streamSid": self.stream_sid,
            }
        )

    async def stream(self, ulaw: bytes) -> None:
        """``ulaw`` as 20 ms ``media`` frames at real-time pace (scheduled from the start, no drift)."""
        start = time.monotonic()
        for n, i in enumerate(range(0, len(ulaw), FRAME)):
            chunk = ulaw[i : i + FRAME].ljust(FRAME, b"\xff")
            await self.send_json(
                {
                    "event": "media",
                    "sequenceNumber": str(next(self._seq)),
                    "media": {
                        "track": "inbound",
                        "chunk": str(next(self._chunk)),
                        "timestamp": str(self._sent_ms),
                        "payload": base64.b64encode(chunk).decode(),
                    },
                    "streamSid": self.stream_sid,
                }
            )
            self._sent_ms += 20
            delay = start + (n + 1) * 0.02 - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)

    async def silence(self, seconds: float) -> None:
        await self.stream(b"\xff" * int(seconds * 8000))

    async def dtmf(self, digit: str) -> None:
        await self.send_json(
            {
                "event": "dtmf",
                "streamSid": self.stream_sid,
                "sequenceNumber": str(next(self._seq)),
                "dtmf": {"track": "inbound_track", "digit": digit},
            }
        )

    async def stop(self) -> None:
        await self.send_json(
            {
                "event": "stop",
                "sequenceNumber": str(next(self._seq)),
                "stop": {"accountSid": self.account_sid, "callSid": self.call_sid},
                "streamSid": self.stream_sid,
            }
        )

    # ------------------------------------------------------------------ receiving and playing

    async def _read(self) -> None:
        assert self.ws is not None
        with contextlib.suppress(Exception):
            async for frame in self.ws:
                now = time.monotonic()
                msg = json.loads(frame)
                self.got.events.append((now, msg))
                if msg["event"] == "media":
                    ulaw = base64.b64decode(msg["media"]["payload"])
                    self.got.audio += ulaw
                    start = max(now + self.delay, self._play_end)
                    self._play_end = start + len(ulaw) / 8000
                elif msg["event"] == "mark":
                    self._pending_marks.append((max(self._play_end, now), msg["mark"]["name"]))
                elif msg["event"] == "clear":
                    self._play_end = now
                    pending, self._pending_marks = self._pending_marks, []
                    for _, name in pending:
                        await self._echo(name, played=False)
                self.changed.set()
        self.changed.set()

    async def _play_marks(self) -> None:
        while True:
            now = time.monotonic()
            due = [m for m in self._pending_marks if m[0] <= now]
            for mark in due:
                self._pending_marks.remove(mark)
                await self._echo(mark[1], played=True)
            await asyncio.sleep(0.01)

    async def _echo(self, name: str, *, played: bool) -> None:
        self.got.echoed.append((time.monotonic(), name, played))
        with contextlib.suppress(Exception):
            await self.send_json(
                {
                    "event": "mark",
                    "sequenceNumber": str(next(self._seq)),
                    "streamSid": self.stream_sid,
                    "mark": {"name": name},
                }
            )
        self.changed.set()

    # ------------------------------------------------------------------ waiting

    def events(self, kind: str, *, since: float = 0.0) -> list[dict[str, Any]]:
        return [m for t, m in self.got.events if m["event"] == kind and t >= since]

    async def wait_for(self, predicate: Any, *, timeout: float = 30.0) -> None:
        async with asyncio.timeout(timeout):
            while not predicate():
                self.changed.clear()
                await self.changed.wait()

    @property
    def closed(self) -> bool:
        return self.ws is not None and self.ws.close_code is not None

    async def wait_closed(self, *, timeout: float = 30.0) -> int | None:
        assert self.ws is not None
        async with asyncio.timeout(timeout):
            await self.ws.wait_closed()
        return self.ws.close_code


_SID = re.compile(r"^CA[0-9a-f]{32}$")


def is_call_sid(value: str) -> bool:
    return bool(_SID.match(value))
