"""What the SIP trunk listener asks of the store, each one short transaction (plain values back).

Who may send INVITEs (:meth:`TrunkDirectory.networks`), who answers one
(:meth:`TrunkDirectory.route`), the digest credentials a carrier's INVITEs must carry, and the writing
of an inbound call (:meth:`TrunkDirectory.open_call`).
"""

from __future__ import annotations

from datetime import timedelta

from callgate.clock import Clock
from callgate.domain import carriers, telephony
from callgate.domain.carriers import InboundRoute
from callgate.store.db import Database

__all__ = ["TRANSPORT", "TrunkDirectory"]

TRANSPORT = "sip_trunk"


class TrunkDirectory:
    def __init__(self, db: Database, clock: Clock, *, join_deadline_s: float) -> None:
        self._db = db
        self._clock = clock
        self._join_deadline_s = join_deadline_s

    async def networks(self) -> list[tuple[str, str]]:
        async with self._db.read() as session:
            return await carriers.inbound_networks(session)

    async def route(self, number: str, source_ip: str) -> InboundRoute:
        async with self._db.read() as session:
            return await carriers.route_inbound(session, number=number, source_ip=source_ip)

    async def inbound_credentials(self, route: InboundRoute) -> tuple[str, str] | None:
        """The username and password the carrier's INVITEs must answer a challenge with, if it has them."""
        if route.team_id is None or route.carrier_id is None:
            return None
        async with self._db.read() as session:
            carrier = await carriers.get_carrier(session, team_id=route.team_id, carrier_id=route.carrier_id)
            if carrier.inbound is None or not carrier.inbound.username or not carrier.inbound.has_password:
                return None
            secrets = await carriers.carrier_secrets(
                session, team_id=route.team_id, carrier_id=route.carrier_id
            )
        if secrets.inbound_password is None:
            return None
        return carrier.inbound.username, secrets.inbound_password

    async def open_call(self, route: InboundRoute, caller: str) -> str:
        """Write the call arriving at ``route``'s number from ``caller``; returns its id."""
        assert route.team_id is not None and route.agent_id is not None and route.number is not None
        team_id, agent_id, number = route.team_id, route.agent_id, route.number
        now = self._clock.now()
        return await self._db.write(
            lambda session: telephony.open_inbound_call(
                session,
                team_id=team_id,
                agent_id=agent_id,
                phone_number_id=route.phone_number_id,
                from_number=caller,
                to_number=number,
                transport=TRANSPORT,
                now=now,
                join_deadline=now + timedelta(seconds=self._join_deadline_s),
            )
        )
