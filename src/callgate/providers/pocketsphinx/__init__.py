"""Light streaming speech-to-text with CMU PocketSphinx: ``pip install 'callgate[speech]'``."""

from callgate.providers.pocketsphinx.stt import PocketsphinxStream, PocketsphinxSTT

__all__ = ["PocketsphinxSTT", "PocketsphinxStream"]
