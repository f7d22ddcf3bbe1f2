"""A small SIP user agent client over WebSocket for tests: requests with digest answers (MD5 or
SHA-256, computed here independently of callgate), dialogs, and an aiortc peer for WebRTC media.

Incoming frames are parsed with ``sipmessage`` directly; requests from the server (BYE) are recorded and
answered 200, as a softphone would.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

import av
import numpy as np
import sipmessage
import websockets
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from websockets.asyncio.client import ClientConnection

from tests.support.live import LiveServer
from tests.support.webrtc_client import CallerTrack
from tests.support.world import Team

_HASH: dict[str, Callable[[bytes], Any]] = {"MD5": hashlib.md5, "SHA-256": hashlib.sha256}


@dataclass
class Dialog:
    call_id: str
    from_tag: str
    to_tag: str
    target: str
    remote_contact: str
    cseq: int


@dataclass
class Creds:
    username: str
    password: str
    domain: str


@dataclass
class Inbox:
    responses: list[sipmessage.Response] = field(default_factory=list)
    requests: list[sipmessage.Request] = field(default_factory=list)
    raw: list[bytes] = field(default_factory=list)


def branch() -> str:
    return "z9hG4bK" + secrets.token_hex(8)


def digest_answer(challenge: str, *, creds: Creds, method: str, uri: str, nc: int = 1) -> str:
    params = dict(re.findall(r'(\w+)="?([^",]*)"?', challenge.split(" ", 1)[1]))
    algorithm = params.get("algorithm", "MD5")

    def h(text: str) -> str:
        return str(_HASH[algorithm](text.encode()).hexdigest())

    cnonce = secrets.token_hex(8)
    ha1 = h(f"{creds.username}:{params['realm']}:{creds.password}")
    ha2 = h(f"{method}:{uri}")
    response = h(f"{ha1}:{params['nonce']}:{nc:08x}:{cnonce}:auth:{ha2}")
    return (
        f'Digest username="{creds.username}", realm="{params["realm"]}", nonce="{params["nonce"]}", '
        f'uri="{uri}", response="{response}", algorithm={algorithm}, qop=auth, nc={nc:08x}, '
        f'cnonce="{cnonce}"'
    )


class SipClient:
    def __init__(self, ws_url: str, creds: Creds, *, algorithm: str = "MD5") -> None:
        self.ws_url = ws_url
        self.creds = creds
        self.algorithm = algorithm
        self.inbox = Inbox()
        self.contact = f"sip:{secrets.token_hex(4)}@{secrets.token_hex(4)}.invalid;transport=ws"
        self.contact_header = f"<{self.contact}>"
        self.from_tag = secrets.token_hex(4)
        self._cseq = secrets.randbelow(1000) + 1
        self._ws: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()

    async def __aenter__(self) -> Self:
        self._ws = await websockets.connect(self.ws_url, subprotocols=[websockets.Subprotocol("sip")])
        self._reader = asyncio.create_task(self._read())
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._ws is not None
        await self._ws.close()
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader

    @property
    def ws(self) -> ClientConnection:
        assert self._ws is not None
        return self._ws

    async def _read(self) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            async for frame in self.ws:
                data = frame.encode() if isinstance(frame, str) else frame
                self.inbox.raw.append(data)
                if data.strip(b"\r\n"):
                    message = sipmessage.Message.parse(data)
                    if isinstance(message, sipmessage.Response):
                        self.inbox.responses.append(message)
                    else:
                        self.inbox.requests.append(message)
                        if message.method != "ACK":
                            await self.ws.send(_reply_ok(message))
                self._changed.set()
        self._changed.set()

    async def wait(self, predicate: Callable[[], object], *, timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout):
            while not predicate():
                self._changed.clear()
                await self._changed.wait()

    async def send_raw(self, data: bytes | str) -> None:
        await self.ws.send(data)

    def build(
        self,
        method: str,
        uri: str,
        *,
        to: str | None = None,
        to_tag: str | None = None,
        call_id: str | None = None,
        cseq: int | None = None,
        via_branch: str | None = None,
        headers: Sequence[tuple[str, str]] = (),
        body: bytes = b"",
    ) -> tuple[bytes, str, int]:
        if cseq is None:
            self._cseq += 1
            cseq = self._cseq
        me = f"sip:{self.creds.username}@{self.creds.domain}"
        to_value = f"<{to or me}>" + (f";tag={to_tag}" if to_tag else "")
        lines = [
            f"{method} {uri} SIP/2.0",
            f"Via: SIP/2.0/WS {secrets.token_hex(4)}.invalid;branch={via_branch or branch()}",
            "Max-Forwards: 70",
            f"To: {to_value}",
            f'From: "tester" <{me}>;tag={self.from_tag}',
            f"Call-ID: {call_id or secrets.token_hex(8)}",
            f"CSeq: {cseq} {method}",
            f"Contact: {self.contact_header}",
            *(f"{k}: {v}" for k, v in headers),
            f"Content-Length: {len(body)}",
        ]
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + body, lines[1].split("branch=")[1], cseq

    async def send(
        self, data: bytes, *, cseq: int, method: str, timeout: float = 15.0
    ) -> sipmessage.Response:
        """Send a request and wait for its final response."""
        seen = len(self.inbox.responses)
        await self.ws.send(data.decode())

        def final() -> sipmessage.Response | None:
            for r in self.inbox.responses[seen:]:
                if r.cseq.sequence == cseq and r.cseq.method == method and r.code >= 200:
                    return r
            return None

        await self.wait(lambda: final() is not None or self.ws.close_code is not None, timeout=timeout)
        found = final()
        assert found is not None, f"no final response to {method}"
        return found

    async def request(
        self,
        method: str,
        uri: str,
        *,
        headers: Sequence[tuple[str, str]] = (),
        body: bytes = b"",
        to: str | None = None,
        call_id: str | None = None,
        authenticate: bool = True,
    ) -> sipmessage.Response:
        """A request outside a dialog; a 401 is answered with the challenge for :attr:`algorithm`."""
        call_id = call_id or secrets.token_hex(8)
        data, _, cseq = self.build(method, uri, call_id=call_id, headers=headers, body=body, to=to)
        response = await self.send(data, cseq=cseq, method=method)
        if response.code != 401 or not authenticate:
            return response
        answer = digest_answer(self.challenge(response), creds=self.creds, method=method, uri=uri)
        headers = [*headers, ("Authorization", answer)]
        data, _, cseq = self.build(method, uri, call_id=call_id, headers=headers, body=body, to=to)
        return await self.send(data, cseq=cseq, method=method)

    def challenge(self, response: sipmessage.Response) -> str:
        return next(
            c for c in response.headers.getlist("WWW-Authenticate") if f"algorithm={self.algorithm}" in c
        )

    async def register_unauthenticated(self) -> sipmessage.Response:
        return await self.request("REGISTER", f"sip:{self.creds.domain}", authenticate=False)

    async def register(self, *, expires: int = 600) -> sipmessage.Response:
        return await self.request("REGISTER", f"sip:{self.creds.domain}", headers=[("Expires", str(expires))])


def _reply_ok(request: sipmessage.Request) -> str:
    lines = ["SIP/2.0 200 OK"]
    for name in ("Via", "From", "To", "Call-ID", "CSeq"):
        lines += [f"{name}: {v}" for v in request.headers.getlist(name)]
    return "\r\n".join([*lines, "Content-Length: 0"]) + "\r\n\r\n"


class RecordingTrack:
    """Reads the agent's audio from a remote track, resampled to 16 kHz mono PCM16."""

    def __init__(self) -> None:
        self.audio: list[tuple[float, bytes]] = []
        self._task: asyncio.Task[None] | None = None
        self._resampler = av.AudioResampler(format="s16", layout="mono", rate=16000)

    def attach(self, track: MediaStreamTrack) -> None:
        self._task = asyncio.create_task(self._read(track))

    async def _read(self, track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                assert isinstance(frame, av.AudioFrame)
                frame.pts = None
                pcm = b"".join(bytes(f.planes[0])[: f.samples * 2] for f in self._resampler.resample(frame))
                self.audio.append((time.monotonic(), pcm))

    def since(self, start: float) -> np.ndarray:
        return np.frombuffer(b"".join(c for t, c in self.audio if t >= start), dtype=np.int16)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


class Caller:
    """A softphone: :class:`SipClient` signalling plus an aiortc peer (caller audio track, agent audio)."""

    def __init__(self, client: SipClient) -> None:
        self.sip = client
        self.pc = RTCPeerConnection()
        self.track = CallerTrack()
        self.heard = RecordingTrack()
        self.dialog: Dialog | None = None
        self.pc.on("track", self.heard.attach)

    async def offer(self) -> str:
        self.pc.addTransceiver(self.track, direction="sendrecv")
        await self.pc.setLocalDescription(await self.pc.createOffer())
        return str(self.pc.localDescription.sdp)

    async def invite(self, target: str, headers: dict[str, str]) -> sipmessage.Response:
        sdp = await self.offer()
        call_id = secrets.token_hex(8)
        extra = [*headers.items(), ("Content-Type", "application/sdp")]
        response = await self.sip.request(
            "INVITE", target, call_id=call_id, headers=extra, body=sdp.encode(), to=target
        )
        if response.code == 200:
            to_tag = response.to_address.parameters["tag"]
            assert to_tag
            contact = response.contact[0].uri
            self.dialog = Dialog(
                call_id, self.sip.from_tag, to_tag, target, str(contact), response.cseq.sequence
            )
            await self.pc.setRemoteDescription(RTCSessionDescription(response.body.decode(), "answer"))
            await self.ack()
        return response

    async def ack(self, cseq: int | None = None) -> None:
        d = self.dialog
        assert d is not None
        data, _, _ = self.sip.build(
            "ACK", d.remote_contact, to=d.target, to_tag=d.to_tag, call_id=d.call_id, cseq=cseq or d.cseq
        )
        await self.sip.send_raw(data.decode())

    async def in_dialog(
        self, method: str, *, headers: Sequence[tuple[str, str]] = (), body: bytes = b""
    ) -> sipmessage.Response:
        d = self.dialog
        assert d is not None
        d.cseq += 1
        data, _, cseq = self.sip.build(
            method,
            d.remote_contact,
            to=d.target,
            to_tag=d.to_tag,
            call_id=d.call_id,
            cseq=d.cseq,
            headers=headers,
            body=body,
        )
        return await self.sip.send(data, cseq=cseq, method=method)

    async def close(self) -> None:
        await self.heard.stop()
        await self.pc.close()


async def invite(
    call: SipCall,
    *,
    register: bool = True,
    creds: Creds | None = None,
    headers: dict[str, str] | None = None,
    target: str | None = None,
) -> tuple[int, str]:
    async with SipClient(call.ws_url, creds or call.creds) as client:
        if register:
            assert (await client.register()).code == 200
        caller = Caller(client)
        try:
            response = await caller.invite(
                target or call.target, call.headers if headers is None else headers
            )
            return response.code, response.phrase
        finally:
            await caller.close()


@dataclass
class SipCall:
    body: dict[str, Any]
    team: Team
    agent_id: str

    @property
    def id(self) -> str:
        return str(self.body["id"])

    @property
    def sip(self) -> dict[str, Any]:
        sip: dict[str, Any] = self.body["sip"]
        return sip

    @property
    def creds(self) -> Creds:
        return Creds(self.sip["sip_username"], self.sip["sip_password"], self.sip["sip_domain"])

    @property
    def ws_url(self) -> str:
        return str(self.sip["ws_url"])

    @property
    def target(self) -> str:
        return str(self.sip["target"])

    @property
    def headers(self) -> dict[str, str]:
        headers: dict[str, str] = self.sip["headers"]
        return headers


async def new_sip_call(live: LiveServer, *, team: Team | None = None, **agent: object) -> SipCall:
    team = team or await live.world.team("acme")
    agent_id = await live.flow_agent(team, **agent)
    body = await live.web_call(team, agent_id, transport="sip")
    return SipCall(body, team, agent_id)


async def sip_call_status(live: LiveServer, call: SipCall) -> dict[str, Any]:
    r = await live.world.client.get(f"/v1/calls/{call.id}", headers=call.team.auth())
    body: dict[str, Any] = r.json()
    return body
