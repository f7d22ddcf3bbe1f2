"""Text-to-speech with Piper (GPL-3.0, optional): ``pip install 'callgate[piper]'``.

Importing this package does not import ``piper``; that happens when a voice is first loaded.
"""

from callgate.providers.piper.tts import PiperTTS

__all__ = ["PiperTTS"]
