"""The caller's voice: RTP audio packets in, 16 kHz mono PCM16 20 ms frames out.

A small reordering jitter buffer that adds no delay to packets arriving in order: each one is decoded
and passed on at once. A missing packet holds later ones back until ``reorder_packets`` more have
arrived (about 60 ms); then it is declared lost. The time of lost packets (and of packets that could
not be decoded) is filled with silence, up to ``max_gap_ms``, so that the audio keeps its length, when
the packets after them came within ``max_gap_ms`` of the last one played (see below).

A jump in RTP timestamps with no packet missing is the sender pausing: Opus DTX (callgate's answers
ask browsers for it, ``usedtx=1``: a silent caller then sends a packet or two per 400 ms instead of 50
a second) or a phone's silence suppression. That time is not filled here (it is counted in
``stats.paused_ms``): the listener counts a pause in a caller's turn by the wall clock when audio stops
arriving, and the recorder places audio by its arrival time, so silence filled here as well would be
counted twice and end turns early. For the same reason a loss is filled only up to ``max_gap_ms``
(default 100 ms, the listener's own gap), and not at all when the audio after it came ``max_gap_ms`` or
more after the last packet played: the listener has then counted that wall-clock time as silence
already. Packets older than what was already passed on are dropped.

aiortc's own receive path is bypassed on purpose: its audio jitter buffer prefetches four packets
(80 ms) and, after a single loss, keeps a further 16-packet backlog for the rest of the call. Opus is
decoded by libopus straight to 16 kHz mono (``opus.py``), with no resampling after it; the other codecs
(and Opus where libopus cannot be loaded) go through aiortc's decoders and a resampler.

With a :class:`~callgate.realtime.media.decoding.DecodeWorker` (``offload=``, as WebRTC calls use) Opus
packets are decoded in its process, off the event loop (one libopus decoder there per stream, whatever
the payload type): the buffer above still runs on the loop (a
packet's duration is read from its TOC byte, so the timeline does not wait for the decoder), and
everything this stream emits while some of its packets are being decoded queues behind them, so the
frames still come out in order.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import av
from aiortc.codecs import get_decoder
from aiortc.codecs.base import Decoder
from aiortc.jitterbuffer import JitterFrame
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import RtpPacket

from callgate.pipeline.audio import Framer, bytes_per_frame
from callgate.realtime.media import opus
from callgate.realtime.media.decoding import DecodeStream, DecodeWorker

log = logging.getLogger(__name__)

OUTPUT_RATE = 16000
_FRAME_BYTES = bytes_per_frame(OUTPUT_RATE)
_SEQ_MOD = 1 << 16
_TS_MOD = 1 << 32
MAX_JUMP = 1000
"""A sequence number this far from the expected one restarts the stream (the peer restarted it)."""


@dataclass(slots=True)
class InboundStats:
    packets: int = 0
    frames: int = 0
    lost_packets: int = 0
    late_packets: int = 0
    concealed_ms: float = 0.0
    paused_ms: float = 0.0
    """Time the sender sent no audio with no packet missing (DTX, silence suppression); not filled."""
    decode_errors: int = 0


def _libopus_can_decode(codec: RTCRtpCodecParameters) -> bool:
    return codec.name.lower() == "opus" and opus.load() is not None


def _signed(delta: int, modulo: int) -> int:
    return (delta + modulo // 2) % modulo - modulo // 2


class InboundAudio:
    """Feed :meth:`push` every audio RTP packet and :meth:`skip` every other packet of the same stream
    (telephone-events share its sequence numbers); ``on_frame`` gets 640-byte frames in order."""

    def __init__(
        self,
        *,
        codecs: Mapping[int, RTCRtpCodecParameters],
        on_frame: Callable[[bytes], None],
        reorder_packets: int = 3,
        max_gap_ms: int = 100,
        decode: Callable[[RtpPacket], tuple[bytes, int] | None] | None = None,
        offload: DecodeWorker | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``decode``: callgate's own decoder for the stream's codecs (G.711 on SIP trunks), giving
        16 kHz mono PCM16 and the packet's duration in samples of its clock rate, or None for a packet
        it cannot decode; without one, aiortc's decoders are used. ``offload``: decode Opus in that
        worker's process (call from the event loop that gets the frames). ``clock``: seconds, to bound
        a counted pause by the time that really passed (a timestamp is the sender's word)."""
        self.stats = InboundStats()
        self._own_decode = decode
        self._codecs = dict(codecs)
        self._on_frame = on_frame
        self._reorder = max(1, reorder_packets)
        self._max_gap_s = max_gap_ms / 1000
        self._decoders: dict[int, Decoder] = {}
        self._opus: dict[int, opus.OpusDecoder] = {}
        self._direct = False  # the last packet was decoded straight to OUTPUT_RATE (no resampler)
        self._resampler: av.AudioResampler | None = None
        self._resampler_key: tuple[int, str] | None = None
        self._framer = Framer(OUTPUT_RATE)
        self._ssrc: int | None = None
        self._next_seq = 0  # extended (unwrapped) sequence number expected next
        self._pending: dict[int, RtpPacket | None] = {}
        self._next_ts: int | None = None  # RTP timestamp where the audio passed on so far ends
        self._missing = 0  # packets lost or undecodable since the last audio was passed on
        self._last_duration = 0  # the last packet's duration, in RTP clock units
        self._clock = clock
        self._played_at: float | None = None  # when the last packet was played, on ``clock``
        self._offload: DecodeStream | None = offload.open(self._decoded) if offload else None

    def close(self) -> None:
        """Stop passing frames on (what the worker still decodes is dropped)."""
        if self._offload is not None:
            self._offload.close()

    def push(self, packet: RtpPacket) -> None:
        self._add(packet, packet)

    def skip(self, packet: RtpPacket) -> None:
        self._add(packet, None)

    def _add(self, header: RtpPacket, audio: RtpPacket | None) -> None:
        self.stats.packets += 1
        if header.ssrc != self._ssrc:
            self._restart(header)
        delta = _signed(header.sequence_number - self._next_seq % _SEQ_MOD, _SEQ_MOD)
        if abs(delta) > MAX_JUMP:
            self._restart(header)
            delta = 0
        if delta < 0 or self._next_seq + delta in self._pending:
            self.stats.late_packets += 1
            return
        self._pending[self._next_seq + delta] = audio
        self._release()

    def _restart(self, packet: RtpPacket) -> None:
        self._ssrc = packet.ssrc
        self._next_seq = packet.sequence_number
        self._pending.clear()
        self._next_ts = None
        self._missing = 0

    def _release(self) -> None:
        pending = self._pending
        while pending:
            if self._next_seq in pending:
                packet = pending.pop(self._next_seq)
                if packet is not None:
                    self._play(packet)
            elif len(pending) >= self._reorder:
                self.stats.lost_packets += 1  # its time is concealed when the next audio plays
                self._missing += 1
            else:
                return
            self._next_seq += 1

    def _play(self, packet: RtpPacket) -> None:
        codec = self._codecs.get(packet.payload_type)
        if codec is None:
            return
        clock = codec.clockRate
        waited = None if self._played_at is None else max(0.0, self._clock() - self._played_at)
        if self._next_ts is not None:
            gap = _signed(packet.timestamp - self._next_ts, _TS_MOD)
            if gap > 0:
                # Missing packets' time is filled (a lost packet is taken to be as long as the last
                # one); the rest of the jump is the sender's pause. Not when ``max_gap_ms`` or more
                # passed since the last packet played: the listener has counted that time as silence.
                lost = min(gap, self._missing * (self._last_duration or gap), round(self._max_gap_s * clock))
                if lost > 0 and (waited is None or waited < self._max_gap_s):
                    self._conceal(lost / clock)
                paused_s = (gap - lost) / clock
                if waited is not None:  # a hostile jump of hours is not hours of pause
                    paused_s = min(paused_s, waited)
                self.stats.paused_ms += paused_s * 1000
        self._missing = 0
        self._played_at = self._clock()
        if self._offload is not None and self._own_decode is None and _libopus_can_decode(codec):
            self._offload_opus(packet, clock)
            return
        decoded = self._decode(packet, codec)
        if decoded is None:
            self._missing += 1  # its time is concealed when the next audio plays
            return
        pcm, samples, rate = decoded
        self._last_duration = round(samples * clock / rate)
        self._next_ts = (packet.timestamp + self._last_duration) % _TS_MOD
        self._emit(pcm)

    def _offload_opus(self, packet: RtpPacket, clock: int) -> None:
        samples = opus.packet_samples(packet.payload, OUTPUT_RATE)
        if samples is None:
            self.stats.decode_errors += 1
            self._missing += 1
            log.debug("could not decode an RTP packet: not Opus")
            return
        assert self._offload is not None
        self._direct = True
        self._last_duration = samples * clock // OUTPUT_RATE
        self._next_ts = (packet.timestamp + self._last_duration) % _TS_MOD
        self._offload.decode(packet.payload, samples)

    def _decoded(self, pcm16: bytes, failed: bool) -> None:
        """From the worker, in order: a packet's audio (or silence in place of one that could not be
        decoded) or audio queued behind packets."""
        if failed:
            self.stats.decode_errors += 1
            self.stats.concealed_ms += len(pcm16) / (2 * OUTPUT_RATE) * 1000
        self._pass_on(pcm16)

    def _opus_decoder(self, payload_type: int, codec: RTCRtpCodecParameters) -> opus.OpusDecoder | None:
        """libopus straight to 16 kHz mono for an Opus payload type (None: not Opus, or no libopus)."""
        direct = self._opus.get(payload_type)
        if direct is None and _libopus_can_decode(codec):
            direct = self._opus[payload_type] = opus.OpusDecoder(OUTPUT_RATE)
        return direct

    def _conceal(self, seconds: float) -> None:
        """Silence for lost time, through the resampler (if one is in use) so that it lands in order."""
        if self._direct:
            self._emit(bytes(round(seconds * OUTPUT_RATE) * 2))
            self.stats.concealed_ms += seconds * 1000
            return
        if self._resampler_key is None:
            return
        rate, layout = self._resampler_key
        silence = av.AudioFrame(format="s16", layout=layout, samples=round(seconds * rate))
        for plane in silence.planes:
            plane.update(bytes(plane.buffer_size))
        silence.sample_rate = rate
        self._emit(b"".join(self._to_output(silence)))
        self.stats.concealed_ms += seconds * 1000

    def _decode(self, packet: RtpPacket, codec: RTCRtpCodecParameters) -> tuple[bytes, int, int] | None:
        if self._own_decode is not None:
            decoded = self._own_decode(packet)
            if decoded is None:
                self.stats.decode_errors += 1
                return None
            self._direct = True
            return decoded[0], decoded[1], codec.clockRate
        direct = self._opus_decoder(packet.payload_type, codec)
        if direct is not None:
            try:
                pcm = direct.decode(packet.payload)
            except opus.OpusError as exc:
                self.stats.decode_errors += 1
                log.debug("could not decode an RTP packet: %s", exc)
                return None
            self._direct = True
            return pcm, len(pcm) // 2, OUTPUT_RATE
        self._direct = False
        decoder = self._decoders.get(packet.payload_type)
        if decoder is None:
            decoder = self._decoders[packet.payload_type] = get_decoder(codec)
        out, samples, rate = [], 0, OUTPUT_RATE
        try:
            for frame in decoder.decode(JitterFrame(packet.payload, packet.timestamp)):
                assert isinstance(frame, av.AudioFrame)
                samples, rate = samples + frame.samples, frame.sample_rate
                out.extend(self._to_output(frame))
        except av.FFmpegError as exc:
            self.stats.decode_errors += 1
            log.debug("could not decode an RTP packet: %s", exc)
            return None
        return b"".join(out), samples, rate

    def _to_output(self, frame: av.AudioFrame) -> list[bytes]:
        key = (frame.sample_rate, frame.layout.name)
        fresh = self._resampler is None or key != self._resampler_key
        if self._resampler is None or fresh:
            self._resampler = av.AudioResampler(format="s16", layout="mono", rate=OUTPUT_RATE)
            self._resampler_key = key
        frame.pts = None  # the resampler needs no timeline: gaps are handled above
        out = [bytes(f.planes[0])[: f.samples * 2] for f in self._resampler.resample(frame)]
        if fresh:
            # The resampler holds back a few samples; start with that much silence so that each
            # packet completes a 20 ms frame at once instead of one packet later.
            expected = frame.samples * OUTPUT_RATE // frame.sample_rate
            produced = sum(len(chunk) for chunk in out) // 2
            out.insert(0, bytes(max(0, expected - produced) * 2))
        return out

    def _emit(self, pcm16: bytes) -> None:
        if self._offload is not None and self._offload.pending:
            self._offload.passthrough(pcm16)  # behind this stream's packets still being decoded
        else:
            self._pass_on(pcm16)

    def _pass_on(self, pcm16: bytes) -> None:
        if len(pcm16) == _FRAME_BYTES and not self._framer.pending_bytes:
            self.stats.frames += 1  # the usual case: one packet, one frame, nothing to re-chunk
            self._on_frame(pcm16)
            return
        for frame in self._framer.push(pcm16):
            self.stats.frames += 1
            self._on_frame(frame)
