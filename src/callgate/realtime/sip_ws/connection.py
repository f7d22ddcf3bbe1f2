"""One WebSocket connection's SIP user agent server: every message in, every response out.

:meth:`SipConnection.handle` takes one frame and never raises: a malformed message gets its 4xx (or is
dropped when not even that can be built), and a failure while handling one request answers that
request 500 and leaves the connection's other dialogs alone. Slow work (an INVITE's setup, a call's
session) runs in tasks this object owns; :meth:`close` ends them when the socket goes away.

Methods: REGISTER, INVITE (new, and re-INVITE), ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE. Other methods
RFC 3261 defines or extends get 405 with ``Allow``; unknown ones 501. Any ``Require`` gets 420: no
extension is required of us. ``\\r\\n\\r\\n`` keep-alives (RFC 5626 §4.4.1) are answered ``\\r\\n``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable

from callgate.realtime.session import CallSession
from callgate.realtime.sip import message
from callgate.realtime.sip.dialog import new_tag
from callgate.realtime.sip.message import Request, SipParseError
from callgate.realtime.sip_ws import reoffer
from callgate.realtime.sip_ws.call import SipCall, SipCallState
from callgate.realtime.sip_ws.guard import Guard
from callgate.realtime.sip_ws.invite import ACCEPT, ALLOW, InviteServer
from callgate.realtime.sip_ws.registrar import RegisterError, Registrar
from callgate.realtime.start import CallStarter

log = logging.getLogger(__name__)

KNOWN = frozenset({"PRACK", "SUBSCRIBE", "NOTIFY", "PUBLISH", "MESSAGE", "REFER"})
MAX_INVITES = 32


class SipConnection:
    def __init__(
        self, starter: CallStarter, send: Callable[[bytes], Awaitable[None]], *, secure: bool
    ) -> None:
        self.starter = starter
        self._send = send
        self._via_transport = "WSS" if secure else "WS"
        self.guard = Guard(starter)
        self.registrar = Registrar(lambda: starter.clock.monotonic())
        self._invites: OrderedDict[str, InviteServer] = OrderedDict()
        self._calls: list[SipCall] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self._malformed = False

    # ---------------------------------------------------------------- entry points

    async def handle(self, data: bytes) -> None:
        if not data.strip(b"\r\n"):
            if data == b"\r\n\r\n":
                await self._send(b"\r\n")
            return
        try:
            msg = message.parse(data)
        except SipParseError as exc:
            # Once per connection at INFO: a client sending garbage must not write a line per frame.
            level = logging.DEBUG if self._malformed else logging.INFO
            log.log(level, "malformed SIP message: %s", exc.reason)
            self._malformed = True
            if exc.reply is not None:
                await self._send(exc.reply)
            return
        if isinstance(msg, message.Response):
            return  # answers to our BYEs: nothing depends on them
        try:
            reply = await self._dispatch(msg)
        except Exception:
            log.exception("failed to handle a SIP %s", msg.method)
            reply = None if msg.method == "ACK" else message.response(msg, 500, to_tag=new_tag())
        if reply is not None:
            await self._send(reply)

    async def close(self) -> None:
        """The socket is gone: calls are lost, INVITEs in progress abandoned; waits for every task."""
        self._closed = True
        for server in self._invites.values():
            server.cancel()
        for call in self._calls:
            call.lose()
        tasks = list(self._tasks)
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    # ---------------------------------------------------------------- dispatch

    async def _dispatch(self, req: Request) -> bytes | None:
        if req.method == "ACK":
            if (call := self._find(req)) is not None:
                call.ack(req)
            return None  # an ACK for a non-2xx final, or for nothing: ignored
        if req.method != "CANCEL" and (required := req.header_list("Require")):
            return message.response(
                req, 420, to_tag=new_tag(), headers=[("Unsupported", ", ".join(required))]
            )
        if req.to_tag is not None and req.method != "CANCEL":
            return self._in_dialog(req)
        if req.method == "REGISTER":
            return await self._register(req)
        if req.method == "INVITE":
            return self._invite(req)
        if req.method == "CANCEL":
            return await self._cancel(req)
        if req.method == "OPTIONS":
            return self._options(req)
        if req.method in ("BYE", "INFO", "UPDATE"):
            return message.response(req, 481, to_tag=new_tag())
        status = 405 if req.method in KNOWN or req.method == "REGISTER" else 501
        return message.response(req, status, to_tag=new_tag(), headers=[("Allow", ALLOW)])

    def _find(self, req: Request) -> SipCall | None:
        return next((c for c in self._calls if c.dialog.matches(req)), None)

    def _in_dialog(self, req: Request) -> bytes:
        call = self._find(req)
        if call is None or call.state is SipCallState.ENDED:
            return message.response(req, 481)
        if not call.dialog.accept_cseq(req):
            return message.response(req, 500, reason="CSeq Out Of Order", headers=[("Retry-After", "1")])
        if req.method == "BYE":
            call.hang_up()
            return message.response(req, 200)
        if req.method in ("INVITE", "UPDATE"):
            return reoffer.reoffer(call, req)
        if req.method == "INFO":
            return reoffer.info(call, req)
        if req.method == "OPTIONS":
            return self._options(req)
        status = 405 if req.method in KNOWN or req.method == "REGISTER" else 501
        return message.response(req, status, headers=[("Allow", ALLOW)])

    def _options(self, req: Request) -> bytes:
        headers = [("Allow", ALLOW), ("Accept", ACCEPT), ("Accept-Encoding", "identity")]
        return message.response(req, 200, to_tag=new_tag(), headers=headers)

    # ---------------------------------------------------------------- REGISTER

    async def _register(self, req: Request) -> bytes:
        account = await self.guard.authenticate(req)
        if isinstance(account, bytes):
            return account
        tag = new_tag()
        if req.to_uri.user != account.username:
            return message.response(req, 403, reason="To Does Not Match Credentials", to_tag=tag)
        refusal = account.refusal(now=self.starter.clock.now(), held_here=self._holds(account.call_id))
        if refusal is not None and not self._deregisters(req, account.username):
            return message.response(req, 403, reason=refusal, to_tag=tag)
        try:
            contacts = self.registrar.update(account.username, req)
        except RegisterError as exc:
            return message.response(req, exc.status, reason=exc.reason, to_tag=tag)
        return message.response(req, 200, to_tag=tag, headers=contacts)

    def _deregisters(self, req: Request, username: str) -> bool:
        """Removing this connection's own binding is allowed even after the call is over."""
        expires = req.header("Expires")
        contacts = req.headers.getlist("Contact")
        return self.registrar.registered(username) and (
            contacts == ["*"] or all("expires=0" in c.replace(" ", "").lower() for c in contacts)
        ) and (expires in (None, "0"))  # fmt: skip

    def _holds(self, call_id: str) -> bool:
        return any(c.call_id == call_id and c.state is not SipCallState.ENDED for c in self._calls)

    # ---------------------------------------------------------------- INVITE and CANCEL

    def _invite(self, req: Request) -> bytes | None:
        if (known := self._invites.get(req.branch)) is not None:
            return known.final  # a retransmission: repeat the final answer, if any yet
        if self._closed:
            return None
        server = InviteServer(
            req,
            starter=self.starter,
            send=self._send,
            authenticate=self.guard.authenticate,
            registered=self.registrar.registered,
            adopt=self._adopt,
            via_transport=self._via_transport,
        )
        self._invites[req.branch] = server
        while len(self._invites) > MAX_INVITES:
            oldest = next(iter(self._invites.values()))
            if oldest.final is None:
                break  # still running: keep it (a CANCEL must find it)
            self._invites.popitem(last=False)
        self._own(server.start())
        return None

    def _adopt(self, call: SipCall, session: CallSession) -> None:
        self._calls = [c for c in self._calls if c.state is not SipCallState.ENDED]
        self._calls.append(call)
        self._own(asyncio.create_task(call.run(session), name=f"sip-call-{call.call_id}"))

    async def _cancel(self, req: Request) -> bytes | None:
        server = self._invites.get(req.branch)
        if server is None or server.request.call_id != req.call_id:
            return message.response(req, 481, to_tag=new_tag())
        await self._send(message.response(req, 200, to_tag=server.to_tag))
        server.cancel()  # if it already answered, the CANCEL has no effect (RFC 3261 §9.2)
        return None

    def _own(self, task: asyncio.Task[None]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(_log_crash)


def _log_crash(task: asyncio.Task[None]) -> None:
    with contextlib.suppress(asyncio.CancelledError):
        if (exc := task.exception()) is not None:
            log.error("a SIP task crashed", exc_info=exc)
