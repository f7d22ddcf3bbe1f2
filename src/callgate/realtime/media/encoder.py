"""Agent audio encoded by callgate, one RTP payload per 20 ms frame, on the calling thread.

aiortc's RTP sender encodes each frame a track returns with one thread-pool hop per frame (and measures
its level first); a track that returns an already encoded :class:`av.Packet` is sent as is. So the
outbound track encodes its frames itself with a :class:`FrameEncoder`: mono (a voice needs no second
channel: Opus carries the channel count per packet and a stereo decoder plays it on both), no resampler
(the track is fed at the codec's own rate), and, for codecs whose encoding of digital silence is one
constant packet (Opus, G.711), that packet computed once (:attr:`FrameEncoder.silence`), so an idle
call sends silence without encoding anything. For Opus it also gives the discontinuous-transmission
packet (:attr:`FrameEncoder.dtx`) that tells the peer's decoder a silence starts in which nothing is sent.
"""

from __future__ import annotations

import fractions
from dataclasses import dataclass

import av

from callgate.pipeline.audio import samples_per_frame

OPUS_BITRATE = 48000
"""Mono voice; aiortc's own encoder sends 96 kbit/s of stereo."""
_SILENCE_WARMUP = 8
"""Frames of silence encoded before reading the steady-state silence packet."""


@dataclass(frozen=True, slots=True)
class _Codec:
    ffmpeg_name: str
    options: dict[str, str]
    rates: tuple[int, ...]
    bit_rate: int = 0


_CODECS = {
    "opus": _Codec("libopus", {"application": "voip"}, (8000, 12000, 16000, 24000, 48000), OPUS_BITRATE),
    "pcmu": _Codec("pcm_mulaw", {}, (8000,)),
    "pcma": _Codec("pcm_alaw", {}, (8000,)),
    "g722": _Codec("g722", {}, (16000,)),
}
ENCODED_CODECS = frozenset(_CODECS)


class FrameEncoder:
    """Encodes 20 ms mono PCM16 frames at ``sample_rate`` for ``codec`` (``opus``, ``PCMU``, ``PCMA``,
    ``G722``; case-insensitive): :meth:`encode` returns one RTP payload per frame."""

    def __init__(self, codec: str, sample_rate: int) -> None:
        self.sample_rate = sample_rate
        self.samples = samples_per_frame(sample_rate)
        self._spec = _CODECS[codec.lower()]
        if sample_rate not in self._spec.rates:
            raise ValueError(f"{codec} cannot be encoded from {sample_rate} Hz audio (no resampler here)")
        self._context = self._open()
        self._pts = 0
        self.silence = self._constant_silence()
        """The payload of a frame of digital silence, if the codec always encodes it the same way once
        settled (Opus, G.711); None if silence must be encoded like any frame (G.722)."""
        self.dtx = _opus_dtx(self.silence) if self._spec.ffmpeg_name == "libopus" else None
        """Opus only: the payload that starts discontinuous transmission (DTX), else None. It is what
        libopus sends when its DTX begins, the TOC byte alone (one frame of zero bytes): a decoder
        takes it as comfort noise, not as a lost packet (WebRTC's NetEq: any Opus payload of 1-2
        bytes), and expects nothing more until the next talkspurt."""

    def _open(self) -> av.AudioCodecContext:
        context = av.CodecContext.create(self._spec.ffmpeg_name, "w")
        assert isinstance(context, av.AudioCodecContext)
        context.format = "s16"
        context.layout = "mono"
        context.sample_rate = self.sample_rate
        context.time_base = fractions.Fraction(1, self.sample_rate)
        if self._spec.bit_rate:
            context.bit_rate = self._spec.bit_rate
        if self._spec.options:
            context.options = dict(self._spec.options)
        return context

    def encode(self, pcm16: bytes) -> bytes:
        """One frame (``2 * samples`` bytes) in, its payload out (empty if the codec held it back)."""
        return self._encode_with(self._context, pcm16)

    def _encode_with(self, context: av.AudioCodecContext, pcm16: bytes) -> bytes:
        frame = av.AudioFrame(format="s16", layout="mono", samples=self.samples)
        frame.planes[0].update(pcm16)
        frame.sample_rate = self.sample_rate
        frame.time_base = context.time_base
        frame.pts = self._pts
        self._pts += self.samples
        return b"".join(bytes(packet) for packet in context.encode(frame))

    def _constant_silence(self) -> bytes | None:
        context, zeros = self._open(), bytes(self.samples * 2)
        payloads = [self._encode_with(context, zeros) for _ in range(_SILENCE_WARMUP)]
        self._pts = 0
        last = payloads[-1]
        return last if last and payloads[-2] == last else None


def _opus_dtx(silence: bytes | None) -> bytes | None:
    """The TOC byte of the stream's own silence packet with its frame-count code set to 0 (one frame),
    so the DTX packet has the stream's mode, bandwidth and 20 ms duration."""
    return bytes([silence[0] & 0xFC]) if silence else None
