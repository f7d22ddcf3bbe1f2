"""The node's SIP trunk: the listener (:mod:`.server`), inbound answering (:mod:`.inbound`) and outbound
dialing (:mod:`.outbound`), started by the runtime when ``CALLGATE_SIP_LISTEN`` is set."""

from __future__ import annotations

import logging

from callgate.domain.lifecycle import EndReason
from callgate.domain.telephony import Dial
from callgate.domain.trunks import TrunkDirectory
from callgate.realtime.sip_trunk.inbound import InboundCalls
from callgate.realtime.sip_trunk.outbound import OutboundCalls
from callgate.realtime.sip_trunk.server import AllowList, SipTrunkServer
from callgate.realtime.sip_trunk.transfer import Transfers
from callgate.realtime.start import CallStarter

__all__ = ["SipTrunk"]

log = logging.getLogger(__name__)


class SipTrunk:
    def __init__(self, *, starter: CallStarter, directory: TrunkDirectory) -> None:
        settings = starter.settings
        self.starter = starter
        self.server = SipTrunkServer(
            route=directory.route,
            allow_list=AllowList(directory.networks),
            refusal=starter.refusal,
            inbound_credentials=directory.inbound_credentials,
            public_address=settings.sip_public_address,
        )
        self._directory = directory

        self.outbound: OutboundCalls | None = None

    async def start(self, host: str, port: int) -> tuple[str, int]:
        inactivity_s = self.starter.settings.rtp_timeout_s
        inbound = InboundCalls(
            server=self.server, starter=self.starter, open_call=self._directory.open_call,
            bind_host=host, inactivity_s=inactivity_s,
        )  # fmt: skip
        self.server.start_call = inbound
        inbound.signalling.transfer = Transfers(server=self.server, starter=self.starter, bind_host=host)
        self.outbound = OutboundCalls(
            server=self.server, starter=self.starter, signalling=inbound.signalling, bind_host=host,
            inactivity_s=inactivity_s,
        )  # fmt: skip
        return await self.server.start(host, port)

    def dial(self, dial: Dial) -> None:
        """Place an outbound call through ``dial.carrier`` (a :class:`~callgate.domain.telephony.Dialer`)."""
        if self.outbound is None:
            raise RuntimeError("the SIP trunk is not started")
        self.outbound.dial(dial)

    async def close(self) -> None:
        """End the calls (``transport_lost``, like other transports at shutdown), then stop listening."""
        await self.server.end_calls(EndReason.TRANSPORT_LOST)
        await self.server.close()
