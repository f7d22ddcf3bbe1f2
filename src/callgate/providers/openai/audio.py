"""Speech endpoints of OpenAI-compatible servers: ``/v1/audio/transcriptions`` (OpenAI, Groq, self-hosted
faster-whisper servers) and ``/v1/audio/speech`` (OpenAI, self-hosted Kokoro/Piper servers).

Transcription is batch: one multipart request per utterance (a 16 kHz mono WAV file, ``model``,
``language`` as ISO 639-1), answered ``{"text": …}``. Speech is streamed: ``response_format: "pcm"``
answers raw 16-bit little-endian mono PCM (24 kHz from OpenAI) as it is synthesised.
"""

from __future__ import annotations

import io
import wave
from collections.abc import AsyncIterator

import httpx
from pydantic import SecretStr

from callgate.errors import ProviderError
from callgate.pipeline.interfaces import STT, TTS, STTCapabilities, STTStream, Transcript, TTSCapabilities
from callgate.providers._cloud import http_error, read_http_error
from callgate.providers._stream import BufferedSTTStream

__all__ = ["OpenAISTT", "OpenAITTS"]

VENDOR = "the OpenAI-compatible speech server"


def _client(base_url: str, api_key: SecretStr | None, timeout: float) -> httpx.AsyncClient:
    headers = {}
    if api_key is not None and api_key.get_secret_value():
        headers["Authorization"] = f"Bearer {api_key.get_secret_value()}"
    return httpx.AsyncClient(
        base_url=base_url.rstrip("/") + "/",
        headers=headers,
        timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
    )


def wav(pcm16: bytes, sample_rate: int) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(pcm16)
    return out.getvalue()


class OpenAISTT(STT):
    """Batch STT against ``{base_url}/audio/transcriptions``."""

    def __init__(
        self,
        *,
        model: str = "whisper-1",
        base_url: str = "https://api.openai.com/v1",
        api_key: SecretStr | None = None,
        timeout: float = 10.0,
        prompt: str | None = None,
    ) -> None:
        self.model, self._prompt = model, prompt
        self._client = _client(base_url, api_key, timeout)
        self.capabilities = STTCapabilities(sample_rate=16000, streaming=False, prompt=True)

    async def transcribe(self, pcm16: bytes, *, language: str = "en", prompt: str = "") -> Transcript:
        if len(pcm16) < self.capabilities.sample_rate // 5:  # under 100 ms: nothing to hear
            return Transcript(text="", language=language)
        data = {"model": self.model, "language": language.split("-")[0].lower(), "response_format": "json"}
        # The utterance's own prompt (a hint for this one) comes after the configured one.
        if full := " ".join(p for p in (self._prompt, prompt.strip()) if p):
            data["prompt"] = full
        files = {"file": ("utterance.wav", wav(pcm16, self.capabilities.sample_rate), "audio/wav")}
        try:
            response = await self._client.post("audio/transcriptions", data=data, files=files)
        except httpx.HTTPError as exc:
            raise http_error(VENDOR, exc) from exc
        error = await read_http_error(VENDOR, response)
        if error is not None:
            raise error
        try:
            text = str(response.json()["text"])
        except (ValueError, KeyError, TypeError) as exc:
            raise ProviderError(f"{VENDOR} answered without a text: {response.text[:200]}") from exc
        return Transcript(text=text.strip(), language=language)

    def stream(self, *, language: str = "en") -> STTStream:
        return BufferedSTTStream(self, language=language)

    async def aclose(self) -> None:
        await self._client.aclose()


class OpenAITTS(TTS):
    """Streaming TTS against ``{base_url}/audio/speech`` with raw PCM output."""

    def __init__(
        self,
        *,
        model: str = "tts-1",
        voice: str = "alloy",
        base_url: str = "https://api.openai.com/v1",
        api_key: SecretStr | None = None,
        timeout: float = 10.0,
        speed: float | None = None,
        sample_rate: int = 24000,
    ) -> None:
        self.model, self.voice, self._speed = model, voice, speed
        self._client = _client(base_url, api_key, timeout)
        self.capabilities = TTSCapabilities(sample_rate=sample_rate, streaming=True)

    async def synthesize(self, text: str) -> AsyncIterator[bytes]:
        body: dict[str, object] = {
            "model": self.model,
            "input": text,
            "voice": self.voice,
            "response_format": "pcm",
        }
        if self._speed is not None:
            body["speed"] = self._speed
        odd = b""
        try:
            async with self._client.stream("POST", "audio/speech", json=body) as response:
                error = await read_http_error(VENDOR, response)
                if error is not None:
                    raise error
                async for chunk in response.aiter_bytes():
                    chunk, odd = odd + chunk, b""
                    if len(chunk) % 2:  # keep samples whole across chunks
                        chunk, odd = chunk[:-1], chunk[-1:]
                    if chunk:
                        yield chunk
        except httpx.HTTPError as exc:
            raise http_error(VENDOR, exc) from exc

    async def aclose(self) -> None:
        await self._client.aclose()
