"""Twilio's REST API, the three requests callgate makes: create a call, hang one up, redirect one
(transfer). ``POST {api_base}/2010-04-01/Accounts/{AccountSid}/Calls.json`` and ``…/Calls/{CallSid}.json``,
form-encoded, HTTP basic auth with the account SID and auth token; answers are JSON.
"""

from __future__ import annotations

import logging
from typing import Any

import httpx

from callgate.domain.twilio_calls import TwilioAccount
from callgate.errors import CarrierFailed

__all__ = ["TwilioRest"]

log = logging.getLogger(__name__)
TIMEOUT_S = 10.0


class TwilioRest:
    """One account's calls on Twilio's REST API. Failures raise :class:`CarrierFailed`."""

    def __init__(self, api_base: str, account: TwilioAccount, *, timeout_s: float = TIMEOUT_S) -> None:
        self._calls = f"{api_base.rstrip('/')}/2010-04-01/Accounts/{account.account_sid}/Calls"
        self._auth = (account.account_sid, account.auth_token)
        self._timeout_s = timeout_s

    async def create_call(self, fields: list[tuple[str, str]]) -> dict[str, Any]:
        """Place a call (``To``, ``From``, ``Twiml`` or ``Url``, ``StatusCallback`` …); Twilio's Call
        resource (``sid``, ``status`` ``queued``)."""
        return await self._post(f"{self._calls}.json", fields)

    async def update_call(self, call_sid: str, fields: list[tuple[str, str]]) -> dict[str, Any]:
        """Change a live call: ``Status=completed`` hangs up, ``Twiml=…`` replaces what it runs."""
        return await self._post(f"{self._calls}/{call_sid}.json", fields)

    async def _post(self, url: str, fields: list[tuple[str, str]]) -> dict[str, Any]:
        try:
            async with httpx.AsyncClient(timeout=self._timeout_s) as client:
                r = await client.post(url, data=dict_of(fields), auth=self._auth)
        except httpx.HTTPError as exc:
            raise CarrierFailed(f"Twilio's API could not be reached: {exc!r}") from exc
        try:
            body = r.json()
        except ValueError:
            body = {}
        if r.status_code >= 400 or not isinstance(body, dict):
            message = body.get("message") if isinstance(body, dict) else None
            raise CarrierFailed(f"Twilio's API answered {r.status_code}: {message or r.text[:200]}")
        return body


def dict_of(fields: list[tuple[str, str]]) -> dict[str, str | list[str]]:
    """Form fields for httpx, a repeated name (``StatusCallbackEvent``) as a list."""
    out: dict[str, str | list[str]] = {}
    for name, value in fields:
        if name in out:
            prior = out[name]
            out[name] = [*prior, value] if isinstance(prior, list) else [prior, value]
        else:
            out[name] = value
    return out
