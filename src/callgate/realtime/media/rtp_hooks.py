"""Where callgate takes RTP out of aiortc's hands, on one peer connection (aiortc 1.16, pinned).

aiortc's media path is general and costs per packet: each received datagram goes from aioice's protocol
into an ``asyncio.Queue``, wakes the DTLS transport's task, is unprotected and parsed there and handed on
through two more coroutines; each sent packet is built by the RTP sender's task, with the marker bit set
on every audio packet. For a server holding hundreds of calls these hooks cut that short:

- :func:`receive_directly`: the caller's SRTP packets are unprotected, parsed and handed to the call's
  receive function right in the datagram callback, with no attempt to parse them as STUN, no queue and
  no task switch. Everything else (STUN, DTLS, SRTCP, packets before the transport is keyed) still takes
  aioice's and aiortc's path.
- :func:`mark_talkspurts`: the marker bit only on the first packet of each talkspurt (after DTX).
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Awaitable, Callable

from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtcrtpreceiver import RTCRtpReceiver
from aiortc.rtp import RtpPacket, is_rtcp
from pylibsrtp import Error as SrtpError

log = logging.getLogger(__name__)

SendRtp = Callable[[bytes], Awaitable[None]]


def receive_directly(
    dtls: RTCDtlsTransport, receiver: RTCRtpReceiver, handle: Callable[[RtpPacket], None]
) -> bool:
    """Once ``dtls`` is connected: the SRTP packets that aiortc would route to ``receiver`` go to
    ``handle`` from the ICE connection's datagram callback instead, in arrival order. Packets of other
    streams on the bundle are dropped (callgate receives one audio stream). Returns False, changing
    nothing, if the transport is not keyed yet."""
    srtp = dtls._rx_srtp
    connection = dtls.transport._connection
    pair = connection._nominated.get(1) if connection is not None else None
    if srtp is None or pair is None:
        return False
    through_aiortc = connection.data_received
    router = dtls._rtp_router
    protocol = pair.protocol
    through_aioice = protocol.datagram_received

    def data_received(data: bytes, component: int) -> None:
        # RFC 7983: 128-191 is RTP or RTCP; RTCP (and DTLS, 20-63) keeps aiortc's path.
        if len(data) < 12 or not 127 < data[0] < 192 or is_rtcp(data):
            through_aiortc(data, component)
            return
        try:
            packet = RtpPacket.parse(srtp.unprotect(data))
        except (SrtpError, ValueError) as exc:  # aiortc drops these too
            log.debug("x RTP dropped: %s", exc)
            return
        if router.route_rtp(packet) is receiver:
            handle(packet)

    def datagram_received(data: bytes | str, addr: tuple[object, ...]) -> None:
        # aioice tries every datagram as STUN first (an exception for each media packet).
        if isinstance(data, bytes) and data and 127 < data[0] < 192:
            data_received(data, 1)
        else:
            through_aioice(data, addr)

    connection.data_received = data_received  # type: ignore[method-assign]
    protocol.datagram_received = datagram_received  # type: ignore[method-assign]
    return True


def mark_talkspurts(send_rtp: SendRtp, *, ssrc: int, step: int) -> SendRtp:
    """Wrap aiortc's RTP send function (``RTCDtlsTransport._send_rtp``, before SRTP) so that the RTP
    marker bit of stream ``ssrc`` is set on the first packet of each talkspurt only (RFC 3551 4.1):
    the first packet sent, and any packet whose timestamp is not the previous one's plus ``step`` (20 ms
    of samples at the codec's clock rate), i.e. that follows a DTX silence. aiortc sets it on every
    audio packet. RTCP and other streams pass through untouched."""
    last: int | None = None
    ours = ssrc.to_bytes(4, "big")

    async def send(data: bytes) -> None:
        nonlocal last
        # RTP version 2 header; RTCP's second byte is 192-223 (its packet type), RTP's a payload
        # type below 128 with the marker bit above it.
        if len(data) >= 12 and data[8:12] == ours and not 192 <= data[1] <= 223:
            (timestamp,) = struct.unpack_from("!I", data, 4)
            starts = last is None or (timestamp - last) % (1 << 32) != step
            last = timestamp
            marker = 0x80 if starts else 0
            if data[1] & 0x80 != marker:
                data = bytes((data[0], (data[1] & 0x7F) | marker)) + data[2:]
        await send_rtp(data)

    return send
