"""Deepgram live streaming STT over its WebSocket API (the ``websockets`` package; no vendor SDK)."""

from callgate.providers.deepgram.stt import DeepgramSTT

__all__ = ["DeepgramSTT"]
