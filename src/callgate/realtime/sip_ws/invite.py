"""The server transaction of a dialog-forming INVITE: from 100 Trying to the 200 OK or a final refusal.

Checks, in order (the first that fails answers):

1. digest authentication (401 with a challenge; 403 after too many failures);
2. this connection registered the username first (403 ``Register First``);
3. the Request-URI is the call's ``target`` (404);
4. every header of the create answer's ``headers`` is present with its value (403 ``Missing <name>``);
5. the credentials are usable: not past the join deadline, not used by an earlier INVITE (403);
6. the body is a WebRTC SDP offer (415 / 488).

Then 180 Ringing, the media answer (:class:`PeerMedia`), the join (created → connecting, which is what
makes the credentials single-use; a lost race answers 403, a full team 486), the call's session
(:class:`~callgate.realtime.start.CallStarter`, like every transport), and the 200 OK. A CANCEL at any
point cancels this task: whatever was set up is released, a call already joined ends as
``caller_hangup``, and the INVITE gets 487.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from callgate.domain.lifecycle import EndReason
from callgate.domain.live_calls import CallPlan
from callgate.domain.sip_accounts import SipAccount
from callgate.errors import AgentMisconfigured, ConcurrencyLimited, IllegalTransition, NotFound
from callgate.realtime.admission import RETRY_AFTER_S
from callgate.realtime.media import DtmfEvent, MediaState, OfferRejected, PeerMedia
from callgate.realtime.session import CallSession
from callgate.realtime.sip import message
from callgate.realtime.sip.dialog import Dialog, DialogError, new_tag, remote_target
from callgate.realtime.sip.message import Request
from callgate.realtime.sip_ws import hold as sdp
from callgate.realtime.sip_ws.call import SipCall
from callgate.realtime.sip_ws.socket import SipCallTransport
from callgate.realtime.start import CallStarter

log = logging.getLogger(__name__)

ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE, REGISTER"
ACCEPT = "application/sdp, application/dtmf-relay, application/dtmf"


class Refused(Exception):
    def __init__(self, status: int, reason: str | None = None, headers: list[tuple[str, str]] | None = None):
        super().__init__(reason)
        self.status, self.reason, self.headers = status, reason, headers or []


class InviteServer:
    """Run :meth:`run` as a task; :meth:`cancel` for a CANCEL. ``adopt`` registers the answered call
    with the connection (before the 200 leaves, so an ACK finds its dialog)."""

    def __init__(
        self,
        request: Request,
        *,
        starter: CallStarter,
        send: Callable[[bytes], Awaitable[None]],
        authenticate: Callable[[Request], Awaitable[SipAccount | bytes]],
        registered: Callable[[str], bool],
        adopt: Callable[[SipCall, CallSession], None],
        via_transport: str,
    ) -> None:
        self.request = request
        self.final: bytes | None = None
        self._starter = starter
        self._send = send
        self._authenticate = authenticate
        self._registered = registered
        self._adopt = adopt
        self._via_transport = via_transport
        self._media: PeerMedia | None = None
        self._joined: asyncio.Future[CallPlan] | None = None
        self._task: asyncio.Task[None] | None = None
        self.to_tag = new_tag()
        """For final responses before a dialog exists (the dialog then takes its own)."""

    def start(self) -> asyncio.Task[None]:
        self._task = asyncio.create_task(self.run(), name=f"sip-invite-{self.request.branch}")
        return self._task

    def cancel(self) -> bool:
        """CANCEL: stop unless a final response was sent. True if the INVITE will be answered 487."""
        if self.final is not None or self._task is None or self._task.done():
            return False
        self._task.cancel()
        return True

    async def _reply(
        self, status: int, *, reason: str | None = None, headers: list[tuple[str, str]] | None = None
    ) -> None:
        self.final = message.response(
            self.request, status, reason=reason, to_tag=self.to_tag, headers=headers
        )
        await self._send(self.final)

    async def run(self) -> None:
        await self._send(message.response(self.request, 100))
        try:
            await self._answer()
        except Refused as exc:
            await self._release(EndReason.SERVER_ERROR if exc.status >= 500 else EndReason.CALLER_HANGUP)
            await self._reply(exc.status, reason=exc.reason, headers=exc.headers)
        except asyncio.CancelledError:
            await self._release(EndReason.CALLER_HANGUP)
            await self._reply(487)
        except Exception:
            log.exception("INVITE failed")
            await self._release(EndReason.SERVER_ERROR)
            await self._reply(500)

    async def _answer(self) -> None:
        request = self.request
        refusal = self._starter.refusal()
        if refusal is not None:  # before the credentials are spent: the caller may try again
            raise Refused(503, "Service Unavailable", headers=[("Retry-After", str(RETRY_AFTER_S))])
        account = await self._authenticate(request)
        if isinstance(account, bytes):
            self.final = account
            await self._send(account)
            return
        self._check(account)
        dialog = Dialog(
            request, local_contact=account.target + ";transport=ws", via_host=account.realm,
            via_transport=self._via_transport,
        )  # fmt: skip
        self.to_tag = dialog.local_tag
        await self._send(message.response(request, 180, to_tag=dialog.local_tag))
        router = _Router()
        self._media = media = PeerMedia(
            on_audio=router.audio,
            on_dtmf=router.dtmf,
            on_state=router.state,
            ice_servers=self._starter.settings.ice_servers,
            host_addresses=self._starter.settings.webrtc_host_addresses,
            name=account.call_id,
        )
        offer = request.body.decode("utf-8", errors="replace")
        try:
            answer = await media.answer(offer)
        except OfferRejected as exc:
            raise Refused(488, headers=[("Warning", f'304 {message.SERVER} "{_quote(exc.detail)}"')]) from exc
        plan = await self._join(account)
        ok = message.response(
            request, 200, to_tag=dialog.local_tag, body=answer.encode(),
            headers=[("Contact", f"<{dialog.local_contact}>"), ("Allow", ALLOW), ("Accept", ACCEPT),
                     ("Content-Type", "application/sdp")],
        )  # fmt: skip
        sip_call = SipCall(
            starter=self._starter, plan=plan, dialog=dialog, media=media, send=self._send, ok=ok
        )
        sip_call.offer_sdp, sip_call.answer_sdp = offer, answer
        sip_call.sdp_version = sdp.origin_version(answer)
        try:
            session = await self._starter.start(
                plan,
                transport=SipCallTransport(media, hang_up=sip_call.send_bye),
                mode="audio",
                output_sample_rate=media.output_rate,
            )
        except AgentMisconfigured as exc:
            self._joined = None  # the starter has ended the call
            raise Refused(500) from exc
        router.call, router.session = sip_call, session
        self._media, self._joined = None, None  # the call owns them now
        self._adopt(sip_call, session)
        self.final = ok
        await self._send(ok)

    def _check(self, account: SipAccount) -> None:
        request = self.request
        if not self._registered(account.username):
            raise Refused(403, "Register First")
        target = f"sip:{request.uri.user}@{request.uri.host}" if request.uri.user else ""
        if request.uri.scheme != "sip" or target.lower() != account.target.lower():
            raise Refused(404)
        for name, value in account.headers.items():
            if request.header(name) != value:
                raise Refused(403, f"Missing {name}")
        refusal = account.refusal(now=self._starter.clock.now(), held_here=False)
        if refusal is not None:
            raise Refused(403, refusal)
        if request.content_type != "application/sdp" or not request.body:
            raise Refused(415 if request.body else 488, None, [("Accept", "application/sdp")])
        try:
            remote_target(request)
        except DialogError as exc:
            raise Refused(400, "Invalid Contact") from exc

    async def _join(self, account: SipAccount) -> CallPlan:
        # Shielded: once queued the write may commit even if we are cancelled, and then must be undone.
        self._joined = asyncio.ensure_future(
            self._starter.join(team_id=account.team_id, call_id=account.call_id)
        )
        try:
            return await asyncio.shield(self._joined)
        except ConcurrencyLimited as exc:
            raise Refused(486, "Too Many Live Calls") from exc
        except (NotFound, IllegalTransition) as exc:
            raise Refused(403, "Credentials Already Used") from exc

    async def _release(self, reason: EndReason) -> None:
        """Undo a setup that did not reach the 200: close the media, end a call already joined."""
        media, joined = self._media, self._joined
        self._media = self._joined = None
        if media is not None:
            with contextlib.suppress(Exception):
                await media.close()
        if joined is None:
            return
        try:
            plan = await joined
        except Exception:
            return  # the join itself failed: nothing to undo
        await self._starter.fail(plan, reason)


class _Router:
    """Media callbacks, bound before the call and session they feed exist."""

    def __init__(self) -> None:
        self.call: SipCall | None = None
        self.session: CallSession | None = None

    def audio(self, pcm16: bytes) -> None:
        if self.session is not None:
            self.session.push_audio(pcm16)

    def dtmf(self, event: DtmfEvent) -> None:
        if self.call is not None:
            self.call.on_dtmf(event)

    def state(self, state: MediaState) -> None:
        if self.call is not None and state in (MediaState.FAILED, MediaState.CLOSED):
            self.call.media_lost()


def _quote(text: str) -> str:
    return text.replace('"', "'").replace("\\", "/")[:200]
