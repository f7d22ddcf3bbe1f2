"""The caller's Opus packets decoded by libopus straight to 16 kHz mono PCM16, through ctypes.

An Opus decoder can produce any of 8, 12, 16, 24 or 48 kHz, mono or stereo, from the same stream. The
pipeline wants 16 kHz mono; aiortc's (PyAV's) decoder always gives 48 kHz stereo, which then has to be
resampled, through a PyAV frame and a resampler call per 20 ms packet. Asking libopus for 16 kHz mono
does less work in the codec and none after it.

libopus is the one PyAV ships with (``av.libs``, in its wheels) or the system's (PyAV built from source
links it). :func:`load` returns None if neither is found; the caller then falls back to PyAV.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from pathlib import Path

import av

from callgate.realtime.media.opus_process import MAX_FRAME_MS, declare

__all__ = ["MAX_FRAME_MS", "OpusDecoder", "OpusError", "library_path", "load", "packet_samples"]


class OpusError(Exception):
    """libopus refused a packet (corrupt or not Opus)."""


@functools.cache
def library_path() -> str | None:
    """Where libopus was found (PyAV's bundled copy first, then the system's), or None."""
    bundled = sorted((Path(av.__file__).resolve().parent.parent / "av.libs").glob("libopus*.so*"))
    system = ctypes.util.find_library("opus")
    for candidate in [*(str(p) for p in bundled), *([system] if system else [])]:
        try:
            declare(ctypes.CDLL(candidate))
        except (OSError, AttributeError):
            continue
        return candidate
    return None


@functools.cache
def load() -> ctypes.CDLL | None:
    """libopus with the few functions used here declared, or None if it cannot be found."""
    path = library_path()
    return None if path is None else declare(ctypes.CDLL(path))


_FRAME_TENTHS_MS = (
    *((100, 200, 400, 600) * 3),  # configs 0-11: SILK, 10/20/40/60 ms
    *((100, 200) * 2),  # 12-15: hybrid, 10/20 ms
    *((25, 50, 100, 200) * 4),  # 16-31: CELT, 2.5/5/10/20 ms
)


def packet_samples(payload: bytes, sample_rate: int) -> int | None:
    """How long an Opus packet is, in samples at ``sample_rate``, read from its TOC byte (RFC 6716
    3.1) without decoding it (and without a call into libopus); None if it cannot be an Opus packet."""
    if not payload:
        return None
    toc = payload[0]
    code = toc & 3
    if code == 0:
        frames = 1
    elif code < 3:
        frames = 2
    elif len(payload) < 2 or not payload[1] & 0x3F:
        return None
    else:
        frames = payload[1] & 0x3F
    tenths_ms = frames * _FRAME_TENTHS_MS[toc >> 3]
    return None if tenths_ms > MAX_FRAME_MS * 10 else tenths_ms * sample_rate // 10000


class OpusDecoder:
    """One stream's decoder: :meth:`decode` takes an Opus packet and returns its PCM16 at
    ``sample_rate`` (8000, 12000, 16000, 24000 or 48000), mono. Raises :class:`OpusError` on a packet
    libopus cannot decode. Needs :func:`load` to have found libopus."""

    def __init__(self, sample_rate: int = 16000) -> None:
        lib = load()
        if lib is None:
            raise RuntimeError("libopus not found")
        self._lib = lib
        self.sample_rate = sample_rate
        self._max_samples = sample_rate * MAX_FRAME_MS // 1000
        self._buffer = ctypes.create_string_buffer(self._max_samples * 2)
        error = ctypes.c_int(0)
        self._state = lib.opus_decoder_create(sample_rate, 1, ctypes.byref(error))
        if error.value != 0 or not self._state:
            raise RuntimeError(f"opus_decoder_create failed ({error.value})")

    def decode(self, payload: bytes) -> bytes:
        samples = self._lib.opus_decode(
            self._state, payload, len(payload), self._buffer, self._max_samples, 0
        )
        if samples < 0:
            raise OpusError(f"opus_decode failed ({samples})")
        return ctypes.string_at(self._buffer, samples * 2)

    def __del__(self) -> None:
        state, self._state = getattr(self, "_state", None), None
        if state:
            self._lib.opus_decoder_destroy(state)
