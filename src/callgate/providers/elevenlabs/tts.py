"""ElevenLabs input streaming: ``{base_url}/v1/text-to-speech/{voice_id}/stream-input``, one WebSocket per
sentence.

The wire protocol (ElevenLabs' documented WebSocket API): the query string names ``model_id``,
``output_format`` (``pcm_16000`` … raw 16-bit mono PCM) and ``language_code``; the ``xi-api-key``
header authenticates. The client opens the stream with ``{"text": " ", "voice_settings": …}``, sends
text (``{"text": "Hello there. ", "flush": true}``) and ends its input with ``{"text": ""}``. The server
answers ``{"audio": "<base64>", …}`` messages and a last ``{"isFinal": true}``; an error is a message
with ``error``/``message`` fields and a close frame (e.g. 1008 for a bad key or quota).
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote, urlencode

from pydantic import SecretStr
from websockets.exceptions import ConnectionClosed

from callgate.errors import ProviderAuthFailed, ProviderError, ProviderUnavailable
from callgate.pipeline.interfaces import TTS, TTSCapabilities
from callgate.providers._cloud import closed_error, ws_connect

__all__ = ["ElevenLabsTTS"]

VENDOR = "ElevenLabs"


class ElevenLabsTTS(TTS):
    def __init__(
        self,
        *,
        api_key: SecretStr | None,
        voice_id: str,
        model_id: str = "eleven_flash_v2_5",
        base_url: str = "wss://api.elevenlabs.io",
        sample_rate: int = 16000,
        language: str = "en",
        timeout: float = 10.0,
        stability: float | None = None,
        similarity_boost: float | None = None,
    ) -> None:
        self._key = api_key
        self.voice_id, self.model_id = voice_id, model_id
        self._base_url = base_url.rstrip("/")
        self._language = language.split("-")[0].lower()
        self._timeout = timeout
        self._voice_settings = {
            k: v
            for k, v in (("stability", stability), ("similarity_boost", similarity_boost))
            if v is not None
        }
        self.capabilities = TTSCapabilities(sample_rate=sample_rate, streaming=True)

    def url(self) -> str:
        query = {
            "model_id": self.model_id,
            "output_format": f"pcm_{self.capabilities.sample_rate}",
            "language_code": self._language,
        }
        return f"{self._base_url}/v1/text-to-speech/{quote(self.voice_id)}/stream-input?{urlencode(query)}"

    async def synthesize(self, text: str) -> AsyncIterator[bytes]:
        headers = {"xi-api-key": self._key.get_secret_value()} if self._key is not None else {}
        socket = await ws_connect(VENDOR, self.url(), headers=headers, open_timeout=self._timeout)
        try:
            opening: dict[str, Any] = {"text": " "}
            if self._voice_settings:
                opening["voice_settings"] = self._voice_settings
            await socket.send(json.dumps(opening))
            await socket.send(json.dumps({"text": text.strip() + " ", "flush": True}))
            await socket.send(json.dumps({"text": ""}))
            async for message in socket:
                event = json.loads(message)
                if event.get("error") or (event.get("message") and "audio" not in event):
                    raise _error(event)
                if event.get("audio"):
                    yield base64.b64decode(event["audio"])
                if event.get("isFinal"):
                    return
            raise ProviderUnavailable(f"{VENDOR} closed the stream before its final message")
        except ConnectionClosed as exc:
            raise closed_error(VENDOR, exc) from exc
        except (ValueError, TypeError) as exc:
            raise ProviderError(f"{VENDOR} sent a message callgate cannot read: {exc!r}") from exc
        finally:
            await socket.close()


def _error(event: dict[str, Any]) -> ProviderError:
    kind = str(event.get("error") or "error")
    message = f"{VENDOR} error ({kind}): {event.get('message') or kind}"
    if "auth" in kind or "api_key" in kind or "unauthorized" in kind:
        return ProviderAuthFailed(message)
    return ProviderError(message)
