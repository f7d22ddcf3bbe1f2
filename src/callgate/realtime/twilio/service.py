"""What the Twilio routes use of the node: the call starter, the Twilio call records, the settings,
and the two things every Twilio call needs — a REST client for its account and the TwiML that connects
it to callgate's Media Streams WebSocket with a fresh single-use token."""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

from callgate.auth import tokens
from callgate.config import Settings
from callgate.domain.twilio_calls import TRANSPORT, TwilioAccount, TwilioRecords
from callgate.errors import CallgateError
from callgate.realtime.start import CallStarter
from callgate.realtime.twilio import twiml
from callgate.realtime.twilio.rest import TwilioRest

__all__ = ["MEDIA_PATH", "STATUS_PATH", "TwilioService", "ws_base"]

log = logging.getLogger(__name__)

MEDIA_PATH = "/telephony/twilio/media"
STATUS_PATH = "/telephony/twilio/status"


def ws_base(http_base: str) -> str:
    """``https://host/prefix`` → ``wss://host/prefix`` (``http`` → ``ws``)."""
    parts = urlsplit(http_base.rstrip("/"))
    scheme = "wss" if parts.scheme == "https" else "ws"
    return f"{scheme}://{parts.netloc}{parts.path}"


class TwilioService:
    def __init__(self, *, starter: CallStarter, records: TwilioRecords, settings: Settings) -> None:
        self.starter = starter
        self.records = records
        self.settings = settings

    def public_base(self, request_base: str) -> str:
        """The base URL Twilio reaches this node at: ``CALLGATE_PUBLIC_URL``, else the request's."""
        return (self.settings.public_url or request_base).rstrip("/")

    def rest(self, account: TwilioAccount) -> TwilioRest:
        return TwilioRest(self.settings.twilio_api_base, account)

    def stream_twiml(self, *, call_id: str, team_id: str, http_base: str, ttl_s: int) -> str:
        """``<Connect><Stream>`` to this node's media WebSocket with a single-use token for the call."""
        token, _ = tokens.issue(
            key=self.settings.signing_key,
            call_id=call_id,
            team_id=team_id,
            transport=TRANSPORT,
            now=self.starter.clock.now(),
            ttl_s=ttl_s,
        )
        url = ws_base(http_base) + MEDIA_PATH
        return twiml.connect_stream(url, {"call_id": call_id, "token": token})

    async def hang_up_unjoined(self, call_id: str) -> None:
        """A Twilio call ended before its media stream joined (``POST /v1/calls/{id}/end`` while it
        rings): cancel it on Twilio. A joined call is hung up by its session's transport."""
        call = await self.records.call(call_id)
        if call is None or call.joined or call.account is None or call.call_sid is None:
            return
        rest = self.rest(call.account)
        for status in ("canceled", "completed"):  # canceled while queued or ringing, else completed
            try:
                await rest.update_call(call.call_sid, [("Status", status)])
                return
            except CallgateError as exc:
                log.info("Twilio refused Status=%s: %s", status, exc.detail, extra={"call": call_id})
