"""ElevenLabs TTS over its WebSocket input-streaming API (the ``websockets`` package; no vendor SDK)."""

from callgate.providers.elevenlabs.tts import ElevenLabsTTS

__all__ = ["ElevenLabsTTS"]
