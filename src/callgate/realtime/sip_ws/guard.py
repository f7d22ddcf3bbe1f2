"""Who is asking: digest authentication of one connection's REGISTER and INVITE requests.

The challenge realm is the host of the request's From URI — the ``sip_domain`` a client was given — so
no account is looked up before the client answers; the answer is then checked against the account its
username names (realm included). Unknown usernames and wrong passwords get the same fresh challenge.
After :data:`MAX_FAILURES` wrong answers the connection gets only 403s: a guesser must reconnect, and
every guess costs a round trip and a new nonce.
"""

from __future__ import annotations

import logging

from callgate.domain.sip_accounts import SipAccount
from callgate.realtime.sip import digest, message
from callgate.realtime.sip.dialog import new_tag
from callgate.realtime.sip.message import Request
from callgate.realtime.start import CallStarter

log = logging.getLogger(__name__)

MAX_FAILURES = 10


class Guard:
    def __init__(self, starter: CallStarter) -> None:
        self._records = starter.services.records
        self.nonces = digest.NonceBook(lambda: starter.clock.monotonic())
        self.failures = 0

    async def authenticate(self, request: Request) -> SipAccount | bytes:
        """The account whose credentials ``request`` proves it holds, or the response to send instead."""
        if self.failures >= MAX_FAILURES:
            return message.response(request, 403, reason="Too Many Failed Attempts", to_tag=new_tag())
        creds = self._credentials(request)
        account = None
        if creds is not None:
            account = await self._records.sip_account(creds.username)
        realm = account.realm if account is not None else request.from_uri.host
        verdict = digest.verify(
            creds,
            method=request.method,
            raw_uri=request.raw_uri,
            realm=realm,
            ha1=account.ha1 if account is not None else None,
            nonces=self.nonces,
        )
        if verdict is digest.Verdict.OK and account is not None:
            return account
        if creds is not None and verdict is digest.Verdict.CHALLENGE:
            self.failures += 1
            log.info("sip digest answer refused for %r (%d)", creds.username, self.failures)
        challenge = digest.challenges(realm, self.nonces.issue(), stale=verdict is digest.Verdict.STALE)
        return message.response(request, 401, to_tag=new_tag(), headers=challenge)

    @staticmethod
    def _credentials(request: Request) -> digest.Credentials | None:
        header = request.header("Authorization")
        if header is None:
            return None
        try:
            return digest.parse_credentials(header)
        except digest.DigestError as exc:
            log.info("unusable Authorization header: %s", exc)
            return None
