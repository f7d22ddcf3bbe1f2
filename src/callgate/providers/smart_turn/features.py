"""Whisper-style log-mel features (80 bins, 8 s at 16 kHz -> 80 x 800), what Smart Turn v3 reads.

The same computation as ``transformers.WhisperFeatureExtractor(chunk_length=8)`` with
``do_normalize=True``, in numpy only: derived from pipecat's vendored copy
(``pipecat/audio/turn/smart_turn/_whisper_features.py``, BSD-2-Clause, Copyright (c) 2024-2026 Daily),
itself derived from Hugging Face Transformers (Apache-2.0, Copyright 2022-2023 The HuggingFace Inc. team).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from numpy.lib.stride_tricks import sliding_window_view

SAMPLE_RATE = 16000
SECONDS = 8
SAMPLES = SAMPLE_RATE * SECONDS
_N_FFT = 400
_HOP = 160
_N_MELS = 80


def _hz_to_mel(freq: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    mels = 3.0 * freq / 200.0
    log_region = freq >= 1000.0
    mels[log_region] = 15.0 + np.log(freq[log_region] / 1000.0) * (27.0 / np.log(6.4))
    return mels


def _mel_to_hz(mels: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    freq = 200.0 * mels / 3.0
    log_region = mels >= 15.0
    freq[log_region] = 1000.0 * np.exp((np.log(6.4) / 27.0) * (mels[log_region] - 15.0))
    return freq


def _mel_filters() -> npt.NDArray[np.float64]:
    """Slaney-normalised triangular filters, ``(n_fft // 2 + 1, 80)``."""
    edges = np.array([0.0, SAMPLE_RATE / 2.0])
    mel_min, mel_max = _hz_to_mel(edges.copy())
    filter_freqs = _mel_to_hz(np.linspace(mel_min, mel_max, _N_MELS + 2))
    fft_freqs = np.linspace(0, SAMPLE_RATE // 2, _N_FFT // 2 + 1)
    diff = np.diff(filter_freqs)
    slopes = filter_freqs[None, :] - fft_freqs[:, None]
    down = -slopes[:, :-2] / diff[:-1]
    up = slopes[:, 2:] / diff[1:]
    filters = np.maximum(0.0, np.minimum(down, up))
    filters *= (2.0 / (filter_freqs[2 : _N_MELS + 2] - filter_freqs[:_N_MELS]))[None, :]
    return filters


_WINDOW = np.hanning(_N_FFT + 1)[:-1]
_FILTERS_T = _mel_filters().T.copy()


def log_mel(audio: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """Features of the last 8 s of ``audio`` (float, 16 kHz), zero-padded at the start if shorter."""
    x = np.asarray(audio, dtype=np.float32)[-SAMPLES:]
    if x.size < SAMPLES:
        x = np.pad(x, (SAMPLES - x.size, 0))
    x = (x - x.mean()) / np.sqrt(x.var() + 1e-7)
    padded = np.pad(x.astype(np.float64), (_N_FFT // 2, _N_FFT // 2), mode="reflect")
    frames = sliding_window_view(padded, _N_FFT)[::_HOP]
    power = (np.abs(np.fft.rfft(frames * _WINDOW, axis=-1)) ** 2).T
    spec = np.log10(np.maximum(1e-10, _FILTERS_T @ power))[:, :-1]
    spec = np.maximum(spec, spec.max() - 8.0)
    out: npt.NDArray[np.float32] = ((spec + 4.0) / 4.0).astype(np.float32)
    return out
