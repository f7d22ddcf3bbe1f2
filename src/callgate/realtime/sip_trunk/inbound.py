"""Answering a carrier's INVITE once the listener accepted it: the call, its media, its session, the 200 OK.

In order: the call is written (kind ``phone``, the number's agent, an inbound phone side) and joined
(:meth:`CallStarter.join`; a full team answers 486), an :class:`RtpSession` is bound on
``CALLGATE_RTP_PORTS`` (none free: 503), the session is built (:meth:`CallStarter.start`; a
misconfigured agent answers 500), the dialog is registered and the 200 OK carries the SDP answer. The
call's task (:meth:`TrunkCall.run`) then waits for the ACK and runs the session. A CANCEL before the
200 ends a joined call ``caller_hangup`` (the listener answers 487).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from callgate.domain.carriers import InboundRoute
from callgate.domain.lifecycle import EndReason
from callgate.domain.live_calls import CallPlan
from callgate.errors import AgentMisconfigured, CallgateError, ConcurrencyLimited
from callgate.realtime.media.rtp_session import RtpSession
from callgate.realtime.sip.dialog import DialogError
from callgate.realtime.sip_trunk import sdp
from callgate.realtime.sip_trunk.call import RtpCallTransport, Signalling, TrunkCall
from callgate.realtime.sip_trunk.dialog import TrunkDialog
from callgate.realtime.sip_trunk.server import ALLOW, InboundInvite, SipTrunkServer
from callgate.realtime.start import CallStarter

__all__ = ["InboundCalls", "OpenCall"]

log = logging.getLogger(__name__)

OpenCall = Callable[[InboundRoute, str], Awaitable[str]]
"""Write the inbound call for ``route`` from the caller (a number or SIP user); returns its id."""


class InboundCalls:
    """The listener's :data:`~callgate.realtime.sip_trunk.server.StartCall`."""

    def __init__(
        self,
        *,
        server: SipTrunkServer,
        starter: CallStarter,
        open_call: OpenCall,
        bind_host: str,
        inactivity_s: float = 30.0,
    ) -> None:
        self._server = server
        self._starter = starter
        self._open_call = open_call
        self._bind_host = bind_host
        self._inactivity_s = inactivity_s
        self.signalling = Signalling(
            send_request=server.send_request,
            transact=lambda channel, data, branch, method: server.transact(
                channel, data, branch=branch, method=method, keep=True
            ),
            forget=server.forget_client,
            register=server.register_dialog,
            unregister=server.unregister_dialog,
        )

    async def __call__(self, invite: InboundInvite) -> None:
        tx, route = invite.tx, invite.route
        if route.team_id is None or route.agent_id is None:
            tx.send(404)
            return
        try:
            dialog = TrunkDialog.answering(
                invite.request,
                local_tag=tx.to_tag,
                local_contact=invite.contact,
                via=self._server.via(invite.transport, invite.source),
            )
        except DialogError:
            tx.send(400, reason="Invalid Contact")
            return
        caller = invite.request.from_uri.user or "anonymous"
        call_id = await self._open_call(route, caller)
        joining = asyncio.ensure_future(self._starter.join(team_id=route.team_id, call_id=call_id))
        try:
            plan = await asyncio.shield(joining)
        except ConcurrencyLimited:
            await self._starter.services.records.fail(
                team_id=route.team_id, call_id=call_id, reason=EndReason.CONCURRENCY_LIMIT
            )
            tx.send(486, reason="Too Many Live Calls")
            return
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await self._starter.fail(await joining, EndReason.CALLER_HANGUP)
            raise
        except CallgateError:
            tx.send(503, headers=[("Retry-After", "5")])
            return
        await self._answer(invite, plan, dialog)

    async def _answer(self, invite: InboundInvite, plan: CallPlan, dialog: TrunkDialog) -> None:
        tx, offer = invite.tx, invite.offer
        call: TrunkCall | None = None
        rtp = RtpSession(
            offer.codec,
            on_audio=lambda pcm: call.audio(pcm) if call is not None else None,
            on_dtmf=lambda event: call.dtmf(event) if call is not None else None,
            on_timeout=lambda: call.media_timeout() if call is not None else None,
            inactivity_s=self._inactivity_s,
            name=plan.call_id,
        )
        try:
            try:
                port = await rtp.open(host=self._bind_host, ports=self._starter.settings.rtp_port_range)
            except OSError:
                log.error("no free RTP port pair", extra={"call": plan.call_id})
                await self._starter.fail(plan, EndReason.SERVER_ERROR)
                tx.send(503, headers=[("Retry-After", "5")])
                return
            call = TrunkCall(
                starter=self._starter, plan=plan, dialog=dialog, channel=invite.channel, rtp=rtp,
                offer=offer, media_host=invite.media_host, signalling=self.signalling, answered=True,
            )  # fmt: skip
            try:
                session = await self._starter.start(
                    plan,
                    transport=RtpCallTransport(rtp, hang_up=call.hang_up, transfer=call.transfer_to),
                    mode="audio",
                    output_sample_rate=8000,
                )
            except AgentMisconfigured:
                tx.send(500, reason="Agent Misconfigured")  # the starter ended the call
                return
        except asyncio.CancelledError:
            await rtp.close()
            await self._starter.fail(plan, EndReason.CALLER_HANGUP)
            raise
        except BaseException:
            await rtp.close()
            raise
        answer = sdp.answer(offer, host=invite.media_host, port=port, session_id=call.sdp_session)
        call.adopt()
        call.ok = tx.send(
            200,
            headers=[
                ("Contact", f"<{invite.contact}>"),
                ("Allow", ALLOW),
                ("Content-Type", "application/sdp"),
            ],
            body=answer,
        )
        rtp.start((offer.host, offer.port))
        if offer.direction in ("sendonly", "inactive"):
            call.held = True
            rtp.hold(True)
        log.info("inbound trunk call answered for %s", invite.number, extra={"call": plan.call_id})
        self._server.spawn(_run(call, session))


async def _run(call: TrunkCall, session: object) -> None:
    from callgate.realtime.session import CallSession

    assert isinstance(session, CallSession)
    try:
        await call.run(session)
    except Exception:
        log.exception("trunk call failed", extra={"call": call.call_id})
