"""Engines for a call that does not listen: a text-mode call on a server without speech engines.

callgate's core installs without the ``speech`` extra; a text-mode call then has no VAD or STT to build.
It needs none — the caller types — so it runs with :class:`DeafVAD`, which hears no speech in whatever
audio arrives (so no turn ever starts from audio), and :class:`DeafSTT`, which is never asked to
transcribe because no spoken turn ever starts.
"""

from __future__ import annotations

from callgate.errors import ProviderUnavailable
from callgate.pipeline.interfaces import STT, VAD, STTCapabilities, Transcript, VADCapabilities, VADStream

UNAVAILABLE = "this server has no speech engines installed (pip install 'callgate[speech]'): text only"


class _Silence(VADStream):
    async def process(self, pcm16: bytes) -> float | None:
        return 0.0 if pcm16 else None


class DeafVAD(VAD):
    capabilities = VADCapabilities(sample_rate=16000, frame_samples=320)

    def create_stream(self) -> VADStream:
        return _Silence()


class DeafSTT(STT):
    capabilities = STTCapabilities(sample_rate=16000)

    async def transcribe(self, pcm16: bytes, *, language: str = "en", prompt: str = "") -> Transcript:
        raise ProviderUnavailable(UNAVAILABLE)
