"""Placing a phone call through Twilio: the call is written, then created on Twilio's REST API with
TwiML that connects the answered call to callgate's media WebSocket, and status callbacks that end it
``busy``, ``no_answer`` or ``carrier_error`` when it never connects."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, replace

from callgate.domain.lifecycle import CallStatus, EndReason
from callgate.domain.telephony import Dial, NewPhoneCall
from callgate.domain.twilio_calls import TwilioAccount
from callgate.errors import BadRequest, CarrierFailed
from callgate.realtime.twilio.service import STATUS_PATH, TwilioService

__all__ = ["PlacedCall", "TwilioDialer", "dial_twilio", "place_twilio_call"]

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
    """Write ``spec`` (from one of the team's numbers on a Twilio carrier) and place it through Twilio.

    ``base_url`` is where Twilio reaches this node when ``CALLGATE_PUBLIC_URL`` is unset (the API
    request's base URL). Raises :class:`~callgate.errors.BadRequest` when ``from_number`` is not such
    a number, and the errors of call creation (``ConcurrencyLimited``, ``InsufficientCredits``,
    ``NotFound`` for the agent). When Twilio refuses the call it is kept, ended ``carrier_error``.
    """
    settings = twilio.settings
    spec = replace(spec, options={"ring_timeout_s": settings.twilio_ring_timeout_s, **spec.options})
    dial = await twilio.records.create_outbound(
        team_id=team_id, spec=spec, join_within_s=settings.twilio_ring_timeout_s + settings.join_deadline_s
    )
    return await dial_twilio(twilio, dial, base_url=base_url)


async def dial_twilio(twilio: TwilioService, dial: Dial, *, base_url: str) -> PlacedCall:
    """Create the written call ``dial`` on Twilio's REST API (see :func:`place_twilio_call`)."""
    settings = twilio.settings
    if dial.secrets.auth_token is None or dial.carrier.account_sid is None:
        raise BadRequest(f"from_number {dial.from_number} is not on a Twilio carrier with an auth token")
    account = TwilioAccount(dial.carrier.id, dial.carrier.account_sid, dial.secrets.auth_token)
    ring_s = round(dial.ring_timeout_s)
    window = ring_s + settings.join_deadline_s
    base = twilio.public_base(base_url)
    stream = twilio.stream_twiml(call_id=dial.call_id, team_id=dial.team_id, http_base=base, ttl_s=window)
    fields = [
        ("To", dial.to_number),
        ("From", dial.from_number),
        ("Twiml", stream),
        ("StatusCallback", f"{base}{STATUS_PATH}?call={dial.call_id}"),
        ("StatusCallbackMethod", "POST"),
        *(("StatusCallbackEvent", event) for event in STATUS_EVENTS),
        ("Timeout", str(ring_s)),
    ]
    try:
        created = await twilio.rest(account).create_call(fields)
    except CarrierFailed as exc:
        log.warning("Twilio refused the call: %s", exc.detail, extra={"call": dial.call_id})
        await twilio.records.fail(
            team_id=dial.team_id, call_id=dial.call_id, reason=EndReason.CARRIER_ERROR, detail=exc.detail
        )
        return PlacedCall(
            dial.call_id, dial.team_id, CallStatus.FAILED, None, EndReason.CARRIER_ERROR, detail=exc.detail
        )
    sid = str(created.get("sid") or "") or None
    if sid is not None:
        await twilio.records.record_sid(dial.call_id, sid)
    log.info("Twilio call placed (%s)", sid, extra={"call": dial.call_id})
    return PlacedCall(dial.call_id, dial.team_id, CallStatus.CREATED, sid)


class TwilioDialer:
    """Places the outbound calls of ``twilio`` carriers (the runtime's ``dialers["twilio"]``): the call
    is written by :func:`callgate.domain.telephony.prepare_phone_call` like any phone call, then created
    on Twilio in a task this dialer owns."""

    def __init__(self, twilio: TwilioService) -> None:
        self._twilio = twilio
        self._tasks: set[asyncio.Task[PlacedCall]] = set()

    def dial(self, dial: Dial) -> None:
        task = asyncio.create_task(
            dial_twilio(self._twilio, dial, base_url=dial.callback_base or ""),
            name=f"twilio-dial-{dial.call_id}",
        )
        self._tasks.add(task)
        task.add_done_callback(self._placed)

    def _placed(self, task: asyncio.Task[PlacedCall]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("placing a Twilio call failed", exc_info=task.exception())

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
