"""Twilio's request signature (``X-Twilio-Signature``): HMAC-SHA1, keyed with the account's auth token,
over the full URL Twilio requested followed by the sorted POST parameters. Checked with the ``twilio``
package's :class:`~twilio.request_validator.RequestValidator`.

The URL is the one *Twilio* used, which behind a TLS-terminating proxy is not the one the server sees
(``https://calls.example.com/…`` arrives as ``http://10.0.0.5:8000/…``). So the URL built from
``CALLGATE_PUBLIC_URL`` is tried first, then the request's own URL; either must carry a valid HMAC.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit, urlunsplit

from twilio.request_validator import RequestValidator

__all__ = ["FormParams", "candidate_urls", "valid"]


class FormParams(dict[str, list[str]]):
    """Form fields with every value of each (the shape ``RequestValidator`` reads through ``getlist``)."""

    @classmethod
    def of(cls, items: Iterable[tuple[str, str]]) -> FormParams:
        out = cls()
        for key, value in items:
            out.setdefault(key, []).append(value)
        return out

    def getlist(self, key: str) -> list[str]:
        return self[key]

    def first(self, key: str) -> str:
        values = self.get(key)
        return values[0] if values else ""

    def flat(self) -> Mapping[str, str]:
        return {key: values[0] for key, values in self.items() if values}


def candidate_urls(request_url: str, public_url: str | None) -> list[str]:
    """The URLs Twilio may have signed for a request that arrived as ``request_url``."""
    urls: list[str] = []
    if public_url:
        got, base = urlsplit(request_url), urlsplit(public_url.rstrip("/"))
        urls.append(urlunsplit((base.scheme, base.netloc, base.path + got.path, got.query, "")))
    if request_url not in urls:
        urls.append(request_url)
    return urls


def valid(*, auth_token: str, urls: list[str], params: FormParams, signature: str | None) -> bool:
    """True if ``signature`` signs ``params`` posted to one of ``urls`` with ``auth_token``."""
    if not signature or not auth_token:
        return False
    validator = RequestValidator(auth_token)
    return any(validator.validate(url, params, signature) for url in urls)
