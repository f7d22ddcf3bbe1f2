"""Placing a phone call through Twilio: the call is written, then created on Twilio's REST API with
TwiML that connects the answered call to callgate's media WebSocket, and status callbacks that end it
``busy``, ``no_answer`` or ``carrier_error`` when it never connects."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from callgate.domain.lifecycle import CallStatus, EndReason
from callgate.domain.telephony import NewPhoneCall
from callgate.errors import CarrierFailed
from callgate.realtime.twilio.service import STATUS_PATH, TwilioService

__all__ = ["PlacedCall", "place_twilio_call"]

log = logging.getLogger(__name__)

STATUS_EVENTS = ("initiated", "ringing", "answered", "completed")


@dataclass(frozen=True, slots=True)
class PlacedCall:
    call_id: str
    team_id: str
    status: CallStatus
    """``created`` while Twilio rings the callee; ``failed`` when Twilio refused the call."""
    call_sid: str | None
    end_reason: EndReason | None = None
    detail: str | None = None


async def place_twilio_call(
    twilio: TwilioService, *, team_id: str, spec: NewPhoneCall, base_url: str
) -> PlacedCall:
    """Place ``spec`` (from one of the team's numbers on a Twilio carrier) through Twilio.

    ``base_url`` is where Twilio reaches this node when ``CALLGATE_PUBLIC_URL`` is unset (the API
    request's base URL). Raises :class:`~callgate.errors.BadRequest` when ``from_number`` is not such
    a number, and the errors of call creation (``ConcurrencyLimited``, ``InsufficientCredits``,
    ``NotFound`` for the agent). When Twilio refuses the call it is kept, ended ``carrier_error``.
    """
    settings = twilio.settings
    window = settings.twilio_ring_timeout_s + settings.join_deadline_s
    call = await twilio.records.create_outbound(team_id=team_id, spec=spec, join_within_s=window)
    assert call.account is not None  # create_outbound refuses numbers without a Twilio account
    base = twilio.public_base(base_url)
    stream = twilio.stream_twiml(call_id=call.call_id, team_id=team_id, http_base=base, ttl_s=window)
    fields = [
        ("To", spec.to_number),
        ("From", spec.from_number),
        ("Twiml", stream),
        ("StatusCallback", f"{base}{STATUS_PATH}?call={call.call_id}"),
        ("StatusCallbackMethod", "POST"),
        *(("StatusCallbackEvent", event) for event in STATUS_EVENTS),
        ("Timeout", str(settings.twilio_ring_timeout_s)),
    ]
    try:
        created = await twilio.rest(call.account).create_call(fields)
    except CarrierFailed as exc:
        log.warning("Twilio refused the call: %s", exc.detail, extra={"call": call.call_id})
        await twilio.records.fail(
            team_id=team_id, call_id=call.call_id, reason=EndReason.CARRIER_ERROR, detail=exc.detail
        )
        return PlacedCall(
            call.call_id, team_id, CallStatus.FAILED, None, EndReason.CARRIER_ERROR, detail=exc.detail
        )
    sid = str(created.get("sid") or "") or None
    if sid is not None:
        await twilio.records.record_sid(call.call_id, sid)
    log.info("Twilio call placed (%s)", sid, extra={"call": call.call_id})
    return PlacedCall(call.call_id, team_id, CallStatus.CREATED, sid)
