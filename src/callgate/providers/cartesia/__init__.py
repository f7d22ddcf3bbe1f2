"""Cartesia TTS over its WebSocket API (the ``websockets`` package; no vendor SDK)."""

from callgate.providers.cartesia.tts import CartesiaTTS

__all__ = ["CartesiaTTS"]
