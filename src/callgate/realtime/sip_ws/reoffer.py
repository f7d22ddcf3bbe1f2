"""Requests inside an established dialog that touch the session: re-INVITE, UPDATE and INFO.

- re-INVITE / UPDATE with an SDP offer: hold (``sendonly``/``inactive``), unhold (``sendrecv``) and
  session-timer refreshes are answered 200 with our previous answer re-issued
  (:func:`callgate.realtime.sip_ws.hold.reanswer`); an offer that would need new media (ICE restart, new
  fingerprint, other media sections) gets 488 and the call continues unchanged.
- re-INVITE without an offer: 200 carrying our current SDP as the offer; the ACK's answer is not used
  (the media does not change). UPDATE without a body: a session-timer refresh, 200.
- A re-INVITE or UPDATE while an earlier INVITE of the dialog still awaits its ACK: 491 Request Pending
  (the client retries after a random pause, RFC 3261 §14.1).
- INFO: DTMF as ``application/dtmf-relay`` or ``application/dtmf`` → 200 and the key goes to the agent
  (:mod:`callgate.realtime.sip.info_keys`); other bodies get 415 with ``Accept``.
"""

from __future__ import annotations

import logging

from callgate.realtime.sip import message
from callgate.realtime.sip.info_keys import CONTENT_TYPES, DtmfError, parse_info
from callgate.realtime.sip.message import Request
from callgate.realtime.sip_ws import hold as sdp
from callgate.realtime.sip_ws.call import SipCall, SipCallState

log = logging.getLogger(__name__)

SDP = "application/sdp"


def _ok(call: SipCall, request: Request, *, body: str | None = None) -> bytes:
    headers = [("Contact", f"<{call.dialog.local_contact}>")]
    if body is not None:
        headers.append(("Content-Type", SDP))
    return message.response(request, 200, headers=headers, body=(body or "").encode())


def reoffer(call: SipCall, request: Request) -> bytes:
    """The response to an in-dialog INVITE or UPDATE."""
    if call.state is SipCallState.ANSWERED or call.reoffer_pending:
        return message.response(request, 491)
    if not request.body:
        if request.method == "UPDATE":
            return _ok(call, request)
        call.sdp_version += 1
        call.reoffer_pending = True
        call.dialog.invite_cseq = request.cseq
        ours = sdp.reanswer(call.answer_sdp, offer_direction="sendrecv", version=call.sdp_version)
        return _ok(call, request, body=ours)
    if request.content_type != SDP:
        return message.response(request, 415, headers=[("Accept", SDP)])
    offer = request.body.decode("utf-8", errors="replace")
    if not sdp.same_session(call.offer_sdp, offer):
        warning = f'{message.SERVER} "only hold and unhold can be renegotiated"'
        return message.response(request, 488, headers=[("Warning", f"304 {warning}")])
    direction = sdp.direction(offer)
    call.sdp_version += 1
    answer = sdp.reanswer(call.answer_sdp, offer_direction=direction, version=call.sdp_version)
    call.held = direction in ("sendonly", "inactive")
    log.info("re-offer: %s (held=%s)", direction, call.held, extra={"call": call.call_id})
    if request.method == "INVITE":
        call.reoffer_pending = True
        call.dialog.invite_cseq = request.cseq
    return _ok(call, request, body=answer)


def info(call: SipCall, request: Request) -> bytes:
    """The response to an in-dialog INFO."""
    if request.content_type not in CONTENT_TYPES:
        return message.response(request, 415, headers=[("Accept", ", ".join(CONTENT_TYPES))])
    try:
        key = parse_info(request.content_type, request.body)
    except DtmfError as exc:
        return message.response(request, 400, reason="Invalid DTMF Body", headers=[_warning(str(exc))])
    call.press_key(key)
    return message.response(request, 200)


def _warning(text: str) -> tuple[str, str]:
    return ("Warning", f'399 {message.SERVER} "{text.replace(chr(34), chr(39))}"')
