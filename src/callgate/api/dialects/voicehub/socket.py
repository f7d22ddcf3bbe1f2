"""VoiceHub's WebCall socket, translated onto callgate's RTVI WebSocket endpoint.

The caller sends ``{"event": "channel.join", "data": {"callId", "channels": ["audio", "text"]}}`` and
gets ``channel.joined`` back, then ``created`` when it joined the text channel; ``channel.leave`` (answered
by ``channel.left``) stops a channel until it is joined again. Text calls cannot join audio. After the
join the conversation runs on the same socket: agent and transcript messages (callgate's RTVI messages)
on the text channel, PCM16 binary frames on the audio channel; the caller sends RTVI messages such as
``send-text`` and ``disconnect-bot``, and binary audio while joined to audio.

This module only translates: :class:`ChannelSocket` wraps the caller's socket so that the real endpoint
(:func:`callgate.realtime.websocket.endpoint.call_websocket`) sees an RTVI client, joins the call with the
single-use token and runs the session exactly as for a native caller.
"""

from __future__ import annotations

import json
from typing import Any, cast

from fastapi import APIRouter, WebSocket
from starlette.types import Message

from callgate.auth import tokens
from callgate.domain import calls
from callgate.errors import CallgateError
from callgate.realtime import rtvi
from callgate.realtime.websocket import endpoint as endpoints
from callgate.runtime import Runtime

router = APIRouter()
CHANNELS = ("audio", "text")
VOICEHUB_TYPE = {"text": "text", "audio": "WebAudio", "audio_text": "TextAudio"}
_JOIN_ID = "voicehub-channel-join"


def socket_path(call_id: str, token: str) -> str:
    """Below the dialect's prefix: where :func:`call_socket` listens for ``call_id``."""
    return f"/calls/{call_id}/socket?token={token}"


def event(name: str, data: dict[str, Any]) -> str:
    return json.dumps({"event": name, "data": data})


class ChannelSocket:
    """The caller's WebSocket as the RTVI endpoint expects it (``accept``, ``receive``, ``send_*``,
    ``close``, ``app``), translating VoiceHub channel events and filtering output by joined channel."""

    def __init__(self, ws: WebSocket, *, call_id: str, mode: str) -> None:
        self._ws = ws
        self.call_id = call_id
        self.mode = mode
        self.channels: set[str] = set()
        self.started = False

    @property
    def app(self) -> Any:
        return self._ws.app

    async def accept(self) -> None:
        await self._ws.accept()

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        await self._ws.close(code=code, reason=reason)

    def _session_mode(self) -> str:
        return self.mode if "audio" in self.channels else "text"

    # -------------------------------------------------------------------- caller → endpoint

    async def receive(self) -> Message:
        """The next frame for the endpoint; channel events are answered here and not passed on."""
        while True:
            message: Message = await self._ws.receive()
            if message["type"] != "websocket.receive":
                return message
            if message.get("bytes") is not None:
                if self.started and "audio" in self.channels:
                    return message
                continue  # audio outside the audio channel is dropped
            translated = await self._translate(message.get("text") or "")
            if translated is not None:
                return {"type": "websocket.receive", "text": translated}

    async def _translate(self, raw: str) -> str | None:
        try:
            obj = json.loads(raw)
        except ValueError:
            obj = None
        if not isinstance(obj, dict):
            await self._error('messages are JSON objects: {"event": ..., "data": {...}}')
            return None
        if obj.get("label") == rtvi.LABEL:
            if not self.started or obj.get("type") == "client-ready":
                await self._error("join a channel first (channel.join)")
                return None
            return raw  # conversation messages are callgate's RTVI messages, passed through
        name, data = obj.get("event"), obj.get("data")
        if name not in ("channel.join", "channel.leave"):
            await self._error(f"unknown event {name!r}")
            return None
        wanted = await self._check(data)
        if wanted is None:
            return None
        had_audio = "audio" in self.channels
        if name == "channel.join":
            self.channels |= wanted
        else:
            self.channels -= wanted
            await self._ws.send_text(
                event("channel.left", {"callId": self.call_id, "channels": sorted(wanted)})
            )
        if not self.started:
            if name == "channel.leave":
                return None
            self.started = True
            ready = {"version": rtvi.PROTOCOL_VERSION, "mode": self._session_mode()}
            return json.dumps({"label": rtvi.LABEL, "type": "client-ready", "id": _JOIN_ID, "data": ready})
        if name == "channel.join":
            await self._joined()
        if had_audio != ("audio" in self.channels):
            # Joining or leaving audio switches what the agent answers with: text only, or speech.
            switch = {"t": "set-mode", "d": {"mode": self._session_mode()}}
            return json.dumps({"label": rtvi.LABEL, "type": "client-message", "id": _JOIN_ID, "data": switch})
        return None

    async def _check(self, data: Any) -> set[str] | None:
        if not isinstance(data, dict) or data.get("callId") != self.call_id:
            await self._error("callId must be this socket's call id")
            return None
        channels = data.get("channels")
        if not isinstance(channels, list) or not channels or any(c not in CHANNELS for c in channels):
            await self._error('channels is a non-empty list of "audio" and/or "text"')
            return None
        if self.mode == "text" and "audio" in channels:
            await self._error("For Text calls, you can't join Audio channels")
            return None
        return set(channels)

    async def _error(self, text: str) -> None:
        await self._ws.send_text(event("error", {"callId": self.call_id, "message": text}))

    async def _joined(self, audio: dict[str, Any] | None = None) -> None:
        data: dict[str, Any] = {"callId": self.call_id, "channels": sorted(self.channels)}
        if audio is not None:
            data["audio"] = audio
        await self._ws.send_text(event("channel.joined", data))

    # -------------------------------------------------------------------- endpoint → caller

    async def send_text(self, data: str) -> None:
        msg = json.loads(data)
        if msg.get("id") == _JOIN_ID and msg.get("type") in ("bot-ready", "server-response"):
            if msg["type"] == "bot-ready":  # the session runs: the join is complete
                await self._joined(msg["data"].get("audio"))
                if "text" in self.channels:
                    created = {"callId": self.call_id, "type": VOICEHUB_TYPE.get(self.mode, self.mode)}
                    await self._ws.send_text(event("created", created))
            return
        if msg.get("type") == "error" or "text" in self.channels:
            await self._ws.send_text(data)

    async def send_bytes(self, data: bytes) -> None:
        if "audio" in self.channels:
            await self._ws.send_bytes(data)


async def _call_mode(runtime: Runtime, call_id: str, token: str) -> str | None:
    """The call's mode, read with the token's team; None if the token does not say (the endpoint
    then refuses the token with its documented close code)."""
    try:
        claims = tokens.decode(token, key=runtime.signing_key, now=runtime.clock.now())
        async with runtime.db.read() as s:
            call = await calls.get_call(s, team_id=claims.team_id, call_id=call_id)
    except CallgateError:
        return None
    return call.mode


@router.websocket("/calls/{call_id}/socket")
async def call_socket(ws: WebSocket, call_id: str, token: str = "") -> None:
    runtime: Runtime = ws.app.state.runtime
    mode = await _call_mode(runtime, call_id, token) or "text"
    socket = ChannelSocket(ws, call_id=call_id, mode=mode)
    # The endpoint only uses the WebSocket methods ChannelSocket provides.
    await endpoints.call_websocket(cast(WebSocket, socket), call_id, token)
