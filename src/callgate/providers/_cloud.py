"""What the cloud engines share: their key, HTTP and WebSocket errors mapped onto callgate's.

Every vendor error becomes one of :class:`~callgate.errors.ProviderError`'s subclasses at this boundary
(``raise Ours(...) from exc``), so the fallback wrappers and the pipeline never see httpx or websockets
exceptions.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from callgate.errors import (
    ProviderAuthFailed,
    ProviderError,
    ProviderRateLimited,
    ProviderTimeout,
    ProviderUnavailable,
)

__all__ = ["closed_error", "http_error", "read_http_error", "status_error", "ws_connect"]


def status_error(vendor: str, status: int, detail: str) -> ProviderError:
    """The error for an HTTP status a vendor answered (a request, or a WebSocket handshake)."""
    message = f"{vendor} answered {status}: {detail}"
    if status in (401, 403):
        return ProviderAuthFailed(message)
    if status == 429:
        return ProviderRateLimited(message)
    if status >= 500:
        return ProviderUnavailable(message)
    return ProviderError(message)


def _detail(body: bytes, fallback: str) -> str:
    text = body[:500].decode(errors="replace")
    try:
        data = json.loads(text)
    except ValueError:
        return text or fallback
    # {"error": {"message": …}} (OpenAI, Anthropic), {"detail": {"message": …}} (ElevenLabs),
    # {"err_msg": …} (Deepgram), {"error": "…"}, {"message": "…"}
    for key in ("error", "detail"):
        value = data.get(key) if isinstance(data, dict) else None
        if isinstance(value, dict) and value.get("message"):
            return str(value["message"])
        if isinstance(value, str):
            return value
    if isinstance(data, dict):
        for key in ("err_msg", "message"):
            if data.get(key):
                return str(data[key])
    return text or fallback


async def read_http_error(vendor: str, response: httpx.Response) -> ProviderError | None:
    """None for a success; else the error the response's status and body describe."""
    if response.status_code < 400:
        return None
    body = await response.aread()
    return status_error(vendor, response.status_code, _detail(body, response.reason_phrase))


def http_error(vendor: str, exc: httpx.HTTPError) -> ProviderError:
    """Translate an httpx transport failure."""
    if isinstance(exc, httpx.TimeoutException):
        return ProviderTimeout(f"{vendor} timed out: {exc!r}")
    return ProviderUnavailable(f"cannot reach {vendor}: {exc!r}")


def closed_error(vendor: str, exc: ConnectionClosed) -> ProviderError:
    """The vendor closed the WebSocket: its close code and reason are its error report."""
    close = exc.rcvd
    if close is None:
        return ProviderUnavailable(f"{vendor} dropped the connection")
    reason = close.reason or "no reason given"
    if close.code == 1008 and any(word in reason.lower() for word in ("auth", "api key", "credential")):
        return ProviderAuthFailed(f"{vendor} closed the stream ({close.code}): {reason}")
    return ProviderError(f"{vendor} closed the stream ({close.code}): {reason}")


async def ws_connect(
    vendor: str, url: str, *, headers: Mapping[str, str], open_timeout: float
) -> ClientConnection:
    """Open a WebSocket to a vendor; handshake refusals and network failures become our errors."""
    try:
        return await connect(
            url, additional_headers=dict(headers), open_timeout=open_timeout, max_size=8 * 1024 * 1024
        )
    except InvalidStatus as exc:
        response = exc.response
        raise status_error(
            vendor, response.status_code, _detail(bytes(response.body or b""), response.reason_phrase)
        ) from exc
    except TimeoutError as exc:
        raise ProviderTimeout(f"{vendor} did not accept the connection in {open_timeout:g} s") from exc
    except (OSError, InvalidHandshake) as exc:
        raise ProviderUnavailable(f"cannot reach {vendor}: {exc!r}") from exc
