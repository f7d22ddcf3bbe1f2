"""SDP checks before an offer reaches aiortc, and the codec parameters of callgate's answers.

aiortc negotiates only the codecs in its module-level ``CODECS`` table, and writes their parameters
into its answers. Importing this module changes that table once, process-wide:

- RFC 4733 ``telephone-event`` (8 kHz and 48 kHz clocks) is added, so that answers accept DTMF when a
  peer offers it. aiortc cannot decode those packets: every peer connection callgate makes goes
  through :class:`callgate.realtime.media.PeerMedia`, whose receive path takes them out before aiortc's
  decoder would see them.
- Opus is answered with ``usedtx=1`` (RFC 7587): the caller's encoder may stop sending while the caller
  is silent (a browser then sends a packet or two per 400 ms instead of 50 a second), which is most of
  a call for a caller who listens. The receive path counts that time as a pause, not as loss (see
  ``inbound``). aiortc's own encoder ignores the parameter; callgate's outbound track does DTX itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiortc.codecs import CODECS
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.sdp import SessionDescription

from callgate.errors import BadRequest

AUDIO_CODECS = ("opus", "g722", "pcmu", "pcma")
TELEPHONE_EVENT = "telephone-event"
MAX_SDP_CHARS = 65_536


class OfferRejected(BadRequest):
    code, title = "sdp_rejected", "The SDP offer cannot be answered"


def _register_telephone_event() -> None:
    audio = CODECS["audio"]
    for clock_rate, payload_type in ((8000, 126), (48000, 110)):
        if not any(c.name.lower() == TELEPHONE_EVENT and c.clockRate == clock_rate for c in audio):
            audio.append(
                RTCRtpCodecParameters(
                    mimeType="audio/telephone-event",
                    clockRate=clock_rate,
                    payloadType=payload_type,
                    parameters={"0-16": None},
                )
            )


_register_telephone_event()


def _ask_for_dtx() -> None:
    for codec in CODECS["audio"]:
        if codec.name.lower() == "opus":
            codec.parameters["usedtx"] = 1


_ask_for_dtx()


@dataclass(frozen=True, slots=True)
class Offer:
    codec: str
    """The audio codec the answer will use: the first of the offer's that we support."""
    has_channel: bool


def parse(sdp: str) -> SessionDescription:
    if len(sdp) > MAX_SDP_CHARS:
        raise OfferRejected(f"the SDP is over {MAX_SDP_CHARS} characters")
    try:
        return SessionDescription.parse(sdp)
    except Exception as exc:  # the parser raises whatever the malformed line provokes
        raise OfferRejected("the SDP offer cannot be parsed") from exc


def check_offer(sdp: str) -> Offer:
    """Reject, before any resources are spent, an offer that has no usable audio."""
    description = parse(sdp)
    audio = [m for m in description.media if m.kind == "audio"]
    if len(audio) != 1:
        raise OfferRejected("the offer must have exactly one audio section")
    media = audio[0]
    if media.direction == "inactive" or media.port == 0:
        raise OfferRejected("the offer's audio section is inactive")
    if media.dtls is None or media.ice is None:
        raise OfferRejected("the offer must use ICE and DTLS-SRTP (a WebRTC offer)")
    codec = next((c.name for c in media.rtp.codecs if c.name.lower() in AUDIO_CODECS), None)
    if codec is None:
        offered = ", ".join(sorted({c.name for c in media.rtp.codecs})) or "none"
        raise OfferRejected(f"no supported audio codec (need opus, G722, PCMU or PCMA; offered {offered})")
    return Offer(codec=codec, has_channel=any(m.kind == "application" for m in description.media))


def audio_codecs(sdp: str) -> list[RTCRtpCodecParameters]:
    """The codecs of the (first) audio section, in order."""
    for media in parse(sdp).media:
        if media.kind == "audio":
            return list(media.rtp.codecs)
    return []
