"""Cartesia: ``{base_url}/tts/websocket``, one WebSocket per sentence.

The wire protocol (Cartesia's documented WebSocket API): the ``X-API-Key`` and ``Cartesia-Version``
headers authenticate; a generation request names ``model_id``, the ``transcript``, the ``voice``
(``{"mode": "id", "id": …}``), the ``language``, a raw ``pcm_s16le`` ``output_format``, a
``context_id`` and ``continue: false`` (no more text for this context). The server answers
``{"type": "chunk", "data": "<base64>"}`` messages, then ``{"type": "done"}``; ``timestamps`` and
``flush_done`` messages may come between. An error is ``{"type": "error", "done": true, …}`` with
``error`` (or ``title``/``message``) and a ``status_code``.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

from pydantic import SecretStr
from websockets.exceptions import ConnectionClosed

from callgate.errors import ProviderError, ProviderUnavailable
from callgate.pipeline.interfaces import TTS, TTSCapabilities
from callgate.providers._cloud import closed_error, status_error, ws_connect

__all__ = ["CartesiaTTS"]

VENDOR = "Cartesia"


class CartesiaTTS(TTS):
    def __init__(
        self,
        *,
        api_key: SecretStr | None,
        voice_id: str,
        model_id: str = "sonic-2",
        base_url: str = "wss://api.cartesia.ai",
        api_version: str = "2024-11-13",
        sample_rate: int = 16000,
        language: str = "en",
        timeout: float = 10.0,
    ) -> None:
        self._key = api_key
        self.voice_id, self.model_id, self._version = voice_id, model_id, api_version
        self._base_url = base_url.rstrip("/")
        self._language = language.split("-")[0].lower()
        self._timeout = timeout
        self.capabilities = TTSCapabilities(sample_rate=sample_rate, streaming=True)

    async def synthesize(self, text: str) -> AsyncIterator[bytes]:
        headers = {"Cartesia-Version": self._version}
        if self._key is not None:
            headers["X-API-Key"] = self._key.get_secret_value()
        socket = await ws_connect(
            VENDOR, f"{self._base_url}/tts/websocket", headers=headers, open_timeout=self._timeout
        )
        context = uuid.uuid4().hex
        try:
            await socket.send(
                json.dumps(
                    {
                        "model_id": self.model_id,
                        "transcript": text,
                        "voice": {"mode": "id", "id": self.voice_id},
                        "language": self._language,
                        "context_id": context,
                        "output_format": {
                            "container": "raw",
                            "encoding": "pcm_s16le",
                            "sample_rate": self.capabilities.sample_rate,
                        },
                        "continue": False,
                    }
                )
            )
            async for message in socket:
                event = json.loads(message)
                kind = event.get("type")
                if kind == "error":
                    raise _error(event)
                if kind == "chunk" and event.get("data"):
                    yield base64.b64decode(event["data"])
                if kind == "done" or (kind == "chunk" and event.get("done")):
                    return
            raise ProviderUnavailable(f"{VENDOR} closed the stream before it was done")
        except ConnectionClosed as exc:
            raise closed_error(VENDOR, exc) from exc
        except (ValueError, TypeError) as exc:
            raise ProviderError(f"{VENDOR} sent a message callgate cannot read: {exc!r}") from exc
        finally:
            await socket.close()


def _error(event: dict[str, Any]) -> ProviderError:
    detail = event.get("error") or ": ".join(str(event[k]) for k in ("title", "message") if event.get(k))
    status = event.get("status_code")
    if isinstance(status, int) and status >= 400:
        return status_error(VENDOR, status, str(detail or "error"))
    return ProviderError(f"{VENDOR} error: {detail or 'unknown'}")
