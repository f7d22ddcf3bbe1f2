"""G.711 (ITU-T): PCMU (mu-law) and PCMA (A-law), 8-bit samples at 8 kHz, by numpy lookup tables.

Decoding is a 256-entry table of PCM16 values; encoding a 65,536-entry table indexed by the PCM16
sample itself, so both are one ``numpy.take`` per packet (``audioop`` did this in C and is deprecated;
it is gone in Python 3.13). The tables follow the reference algorithms (Sun's g711.c): mu-law with a
bias of 0x84 and the 14-bit clip at 32,635, A-law on 13-bit magnitudes, even bits inverted (0x55).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import numpy.typing as npt

__all__ = ["SILENCE", "decode", "encode"]

Law = Literal["PCMU", "PCMA"]
_BIAS = 0x84
_CLIP14 = 8159  # mu-law clips 14-bit magnitudes here


def _ulaw_decode_table() -> npt.NDArray[np.int16]:
    u = ~np.arange(256, dtype=np.int32) & 0xFF
    exponent, mantissa = (u >> 4) & 0x07, u & 0x0F
    magnitude = (((mantissa << 3) + _BIAS) << exponent) - _BIAS
    return np.where(u & 0x80, -magnitude, magnitude).astype(np.int16)


def _alaw_decode_table() -> npt.NDArray[np.int16]:
    a = np.arange(256, dtype=np.int32) ^ 0x55
    exponent, mantissa = (a >> 4) & 0x07, a & 0x0F
    magnitude = np.where(
        exponent == 0, (mantissa << 4) + 8, ((mantissa << 4) + 0x108) << np.maximum(exponent - 1, 0)
    )
    return np.where(a & 0x80, magnitude, -magnitude).astype(np.int16)


def _segment(values: npt.NDArray[np.int32], top: npt.NDArray[np.int32]) -> npt.NDArray[np.int32]:
    """The index of the first segment end ``values`` do not exceed (8 when above every one)."""
    return np.searchsorted(top, values, side="left").astype(np.int32)


def _ulaw_encode_table() -> npt.NDArray[np.uint8]:
    pcm = np.arange(65536, dtype=np.int32)
    pcm = np.where(pcm >= 32768, pcm - 65536, pcm) >> 2  # 14-bit; index = the sample as uint16
    mask = np.where(pcm < 0, 0x7F, 0xFF)
    magnitude = np.minimum(np.abs(pcm), _CLIP14) + (_BIAS >> 2)
    ends = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF], dtype=np.int32)
    segment = _segment(magnitude, ends)
    code = (segment << 4) | ((magnitude >> (segment + 1)) & 0x0F)
    code = np.where(segment >= 8, 0x7F, code)
    return ((code ^ mask) & 0xFF).astype(np.uint8)


def _alaw_encode_table() -> npt.NDArray[np.uint8]:
    pcm = np.arange(65536, dtype=np.int32)
    pcm = np.where(pcm >= 32768, pcm - 65536, pcm) >> 3  # 13-bit
    sign = np.where(pcm >= 0, 0x80, 0x00)
    magnitude = np.where(pcm >= 0, pcm, -pcm - 1)
    ends = np.array([0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF], dtype=np.int32)
    segment = _segment(magnitude, ends)
    shift = np.where(segment < 2, 1, segment)
    code = (segment << 4) | ((magnitude >> shift) & 0x0F)
    code = np.where(segment >= 8, 0x7F, code)
    return ((code | sign) ^ 0x55).astype(np.uint8)


_DECODE = {"PCMU": _ulaw_decode_table(), "PCMA": _alaw_decode_table()}
_ENCODE = {"PCMU": _ulaw_encode_table(), "PCMA": _alaw_encode_table()}
SILENCE = {"PCMU": b"\xff", "PCMA": b"\xd5"}
"""One sample of digital silence in each law."""


def decode(payload: bytes, law: Law) -> bytes:
    """G.711 bytes to PCM16 (little-endian), one sample per byte."""
    codes = np.frombuffer(payload, dtype=np.uint8)
    return _DECODE[law].take(codes).astype("<i2").tobytes()


def encode(pcm16: bytes, law: Law) -> bytes:
    """PCM16 (little-endian, an even number of bytes) to G.711 bytes."""
    samples = np.frombuffer(pcm16, dtype="<u2")
    return _ENCODE[law].take(samples).tobytes()
