"""PCM16 helpers: conversion, resampling, 20 ms framing, levels, silence.

All audio in the pipeline is 16-bit little-endian mono ``bytes``. These helpers are pure and cheap; the
streaming ones (:class:`StreamResampler`, :class:`Framer`) keep per-stream state so that chunk boundaries
neither click nor lose samples.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import numpy.typing as npt
import soxr

Int16Array = npt.NDArray[np.int16]
Quality = Literal["QQ", "LQ", "MQ", "HQ", "VHQ"]

SAMPLE_WIDTH = 2
"""Bytes per PCM16 sample."""
FRAME_MS = 20

_FULL_SCALE = 32768.0
SILENCE_DBFS = -120.0
"""What :func:`dbfs` returns for digital silence instead of minus infinity."""


def pcm16_to_array(pcm16: bytes) -> Int16Array:
    """View PCM16 bytes as an int16 array (a copy-free, read-only view)."""
    if len(pcm16) % SAMPLE_WIDTH:
        raise ValueError(f"PCM16 needs an even number of bytes, got {len(pcm16)}")
    return np.frombuffer(pcm16, dtype="<i2")


def array_to_pcm16(samples: npt.NDArray[np.generic]) -> bytes:
    """Encode samples as PCM16 bytes; floats are read as -1..1 and clipped, ints are clipped to int16."""
    arr = np.asarray(samples)
    if np.issubdtype(arr.dtype, np.floating):
        arr = np.round(np.clip(arr, -1.0, 1.0) * 32767.0)
    return np.clip(arr, -32768, 32767).astype("<i2").tobytes()


def samples_per_frame(sample_rate: int, frame_ms: int = FRAME_MS) -> int:
    samples, rem = divmod(sample_rate * frame_ms, 1000)
    if rem:
        raise ValueError(f"{frame_ms} ms is not a whole number of samples at {sample_rate} Hz")
    return samples


def bytes_per_frame(sample_rate: int, frame_ms: int = FRAME_MS) -> int:
    return samples_per_frame(sample_rate, frame_ms) * SAMPLE_WIDTH


def duration_ms(pcm16: bytes, sample_rate: int) -> float:
    return len(pcm16) / SAMPLE_WIDTH * 1000.0 / sample_rate


def silence(ms: float, sample_rate: int) -> bytes:
    """``ms`` milliseconds of digital silence."""
    return bytes(round(sample_rate * ms / 1000.0) * SAMPLE_WIDTH)


def tone(ms: float, sample_rate: int, *, freq: float = 440.0, amplitude: float = 0.3) -> bytes:
    """A sine tone, handy for tests and fakes."""
    n = round(sample_rate * ms / 1000.0)
    t = np.arange(n, dtype=np.float64) / sample_rate
    return array_to_pcm16(amplitude * np.sin(2.0 * math.pi * freq * t))


def rms(pcm16: bytes) -> float:
    """Root mean square level, 0..1 of full scale."""
    arr = pcm16_to_array(pcm16)
    if arr.size == 0:
        return 0.0
    as_float = arr.astype(np.float64) / _FULL_SCALE
    return float(np.sqrt(np.mean(as_float * as_float)))


def dbfs(pcm16: bytes) -> float:
    """Level in dB relative to full scale; :data:`SILENCE_DBFS` for silence."""
    level = rms(pcm16)
    if level <= 0.0:
        return SILENCE_DBFS
    return max(SILENCE_DBFS, 20.0 * math.log10(level))


def resample(pcm16: bytes, from_rate: int, to_rate: int) -> bytes:
    """Resample one whole buffer (e.g. a complete utterance). Use :class:`StreamResampler` for streams."""
    if from_rate == to_rate or not pcm16:
        return pcm16
    out = soxr.resample(pcm16_to_array(pcm16), from_rate, to_rate, quality="HQ")
    return array_to_pcm16(out)


class StreamResampler:
    """Resamples a continuous stream chunk by chunk, keeping filter state across chunks.

    Resampling each chunk on its own restarts the filter at every boundary, which clicks audibly every
    20 ms; one of these per stream does not. Call :meth:`flush` once at the end of the stream.

    ``quality`` trades latency for fidelity: soxr's "HQ" filter releases audio in blocks (at 16 -> 8 kHz
    nothing for the first ~100 ms), fine for speech the caller hears; "QQ" releases every chunk at once
    and suits analysis such as VAD, where a late decision costs more than aliasing.
    """

    def __init__(self, from_rate: int, to_rate: int, *, quality: Quality = "HQ") -> None:
        self.from_rate = from_rate
        self.to_rate = to_rate
        self.quality = quality
        self._stream: soxr.ResampleStream | None = None
        if from_rate != to_rate:
            self._stream = self._new_stream()

    def _new_stream(self) -> soxr.ResampleStream:
        return soxr.ResampleStream(self.from_rate, self.to_rate, 1, dtype="int16", quality=self.quality)

    def process(self, pcm16: bytes) -> bytes:
        if self._stream is None or not pcm16:
            return pcm16
        out = self._stream.resample_chunk(pcm16_to_array(pcm16))
        return array_to_pcm16(out)

    def flush(self) -> bytes:
        """Emit what the filter still holds and reset, so the object can start a new stream."""
        if self._stream is None:
            return b""
        out = self._stream.resample_chunk(np.zeros(0, dtype=np.int16), last=True)
        self._stream = self._new_stream()
        return array_to_pcm16(out)


class Framer:
    """Re-chunks arbitrary PCM16 byte chunks into frames of exactly ``frame_ms``.

    >>> f = Framer(16000)
    >>> [len(x) for x in f.push(bytes(1000))]
    [640]
    >>> f.pending_bytes
    360
    """

    def __init__(self, sample_rate: int, frame_ms: int = FRAME_MS) -> None:
        self.sample_rate = sample_rate
        self.frame_ms = frame_ms
        self.frame_bytes = bytes_per_frame(sample_rate, frame_ms)
        self._buf = bytearray()

    @property
    def pending_bytes(self) -> int:
        return len(self._buf)

    def push(self, pcm16: bytes) -> list[bytes]:
        """Add audio; return every complete frame now available, oldest first."""
        if len(pcm16) % SAMPLE_WIDTH:
            raise ValueError(f"PCM16 needs an even number of bytes, got {len(pcm16)}")
        self._buf.extend(pcm16)
        n = len(self._buf) // self.frame_bytes
        if n == 0:
            return []
        cut = n * self.frame_bytes
        data = bytes(self._buf[:cut])
        del self._buf[:cut]
        fb = self.frame_bytes
        return [data[i : i + fb] for i in range(0, cut, fb)]

    def flush(self, *, pad: bool = True) -> bytes | None:
        """The partial frame left over, zero-padded to a full frame if ``pad``; None if nothing is left."""
        if not self._buf:
            return None
        data = bytes(self._buf)
        self._buf.clear()
        if pad:
            data += bytes(self.frame_bytes - len(data))
        return data

    def clear(self) -> None:
        self._buf.clear()
