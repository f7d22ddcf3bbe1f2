"""Text-to-speech with the ``espeak-ng`` program (GPL-3.0, run as a separate process).

Install it from the OS (``apt-get install espeak-ng``); nothing is imported.
"""

from callgate.providers.espeak.tts import EspeakTTS

__all__ = ["EspeakTTS"]
