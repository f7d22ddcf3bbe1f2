"""How one delivery goes on the wire: the URL, the body, and the bytes its signature covers.

``POST``, ``PUT`` and ``PATCH`` carry the rendered body, and the Standard Webhooks signature covers it.

``GET`` (which some vendors' webhooks offer, e.g. Vocode's) carries no body. The rendered JSON object's
top-level fields become query parameters appended to the URL's own: strings as they are, numbers and
booleans as JSON text (``1.5``, ``true``), objects and arrays as compact JSON, nulls left out. The
signature then covers the URL's query string exactly as sent — any parameters the URL already had
included — so a receiver verifies ``request.url.query`` (the raw query) where it would verify the body.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

import httpx

__all__ = ["BODY_METHODS", "METHODS", "WireRequest", "prepare", "query_params"]

BODY_METHODS = ("POST", "PUT", "PATCH")
METHODS = (*BODY_METHODS, "GET")


@dataclass(frozen=True, slots=True)
class WireRequest:
    method: str
    url: httpx.URL
    content: bytes | None
    content_type: str | None
    signed: bytes
    """What the ``webhook-signature`` covers: the body, or for ``GET`` the raw query string."""


def query_params(body: bytes) -> list[tuple[str, str]]:
    """The query parameters that stand for ``body`` (a JSON object; anything else is one ``payload``)."""
    try:
        value: Any = json.loads(body)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        return [("payload", body.decode())]
    params: list[tuple[str, str]] = []
    for key, item in value.items():
        if item is None:
            continue
        text = item if isinstance(item, str) else json.dumps(item, separators=(",", ":"), ensure_ascii=False)
        params.append((str(key), text))
    return params


def prepare(*, method: str, url: str, body: bytes, content_type: str) -> WireRequest:
    """The request for one attempt (``method`` is one of :data:`METHODS`)."""
    if method not in METHODS:
        raise ValueError(f"webhook method must be one of {METHODS}, not {method!r}")
    if method != "GET":
        return WireRequest(method, httpx.URL(url), body, content_type, body)
    target = httpx.URL(url)
    ours = urlencode(query_params(body), quote_via=quote, safe="")
    own = target.query.decode()
    # httpx may normalise a query's encoding; the signature covers what it will actually send.
    sent = target.copy_with(query="&".join(p for p in (own, ours) if p).encode() or None)
    return WireRequest(method, sent, None, None, sent.query)
