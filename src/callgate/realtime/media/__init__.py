"""The aiortc media bridge shared by the transports that carry WebRTC media (WebRTC, SIP over WebSocket).

:class:`PeerMedia` is the whole public surface; its docstring is the contract.
"""

from callgate.realtime.media.inbound import InboundStats
from callgate.realtime.media.offer import OfferRejected
from callgate.realtime.media.outbound import OutboundStats
from callgate.realtime.media.peer import OUTPUT_RATES, MediaState, PeerMedia
from callgate.realtime.media.telephone_events import DtmfEvent

__all__ = [
    "OUTPUT_RATES",
    "DtmfEvent",
    "InboundStats",
    "MediaState",
    "OfferRejected",
    "OutboundStats",
    "PeerMedia",
]
