"""SIP transactions over UDP and TCP (RFC 3261 §17) and the channel a dialog's messages travel on.

A :class:`Channel` is one peer: where a dialog's requests go (the carrier's address, or the source of
its INVITE — symmetric signalling, which is what works through NAT) and over which transport.

:class:`ServerTransaction` answers one request: retransmitted requests get the last response again,
and over UDP a final non-2xx answer to an INVITE is resent until the ACK (timer G up to H).

:class:`ClientTransaction` sends one request and collects its responses: over UDP it retransmits on
timer A/E (T1 doubling, non-INVITE capped at T2) until a response (INVITE: any; others: a final one),
and gives up after 64*T1 with a synthesised 408.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

import sipmessage

from callgate.realtime.sip.dialog import new_tag
from callgate.realtime.sip.message import Request, Response, response

__all__ = ["T1", "T2", "Channel", "ClientTransaction", "Owner", "ServerTransaction", "TrunkResponse"]

T1, T2 = 0.5, 4.0
Address = tuple[str, int]
Reply = Callable[[bytes], None]


@dataclass(frozen=True, slots=True)
class Channel:
    """A peer and how to reach it: ``send`` writes one message (never raises)."""

    transport: str
    """``udp`` or ``tcp``."""
    peer: Address
    local: Address
    """Our address as the peer should see it (Via sent-by, Contact)."""
    send: Reply

    @property
    def reliable(self) -> bool:
        return self.transport == "tcp"


@dataclass(frozen=True, slots=True)
class TrunkResponse:
    """A response with its body (``Response`` from the shared parser keeps only headers)."""

    head: Response
    body: bytes

    @property
    def status(self) -> int:
        return self.head.status

    def header(self, name: str) -> str | None:
        return self.head.headers.get(name)

    def headers(self, name: str) -> list[str]:
        return list(self.head.headers.getlist(name))


class Owner(Protocol):
    """Who keeps the transaction tables and owns the tasks (the listener)."""

    def spawn(self, coro: Awaitable[None]) -> asyncio.Task[None]: ...

    def forget(self, tx: ServerTransaction) -> None: ...


class ServerTransaction:
    def __init__(self, owner: Owner, request: Request, reply: Reply, *, reliable: bool) -> None:
        self.owner = owner
        self.request = request
        self.reply = reply
        self.reliable = reliable
        self.to_tag = new_tag()
        self.last: bytes | None = None
        self.status: int | None = None
        self.acked = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        """The task answering an INVITE (a CANCEL cancels it)."""

    @property
    def final(self) -> bool:
        return self.status is not None and self.status >= 200

    def send(
        self,
        status: int,
        *,
        reason: str | None = None,
        headers: list[tuple[str, str]] | None = None,
        body: bytes = b"",
    ) -> bytes | None:
        """Send a response (ignored once a final one was sent); returns it."""
        if self.final:
            return None
        data = response(self.request, status, reason=reason, to_tag=self.to_tag, headers=headers, body=body)
        self.last = data
        self.status = status
        self.reply(data)
        if status >= 200:
            invite = self.request.method == "INVITE"
            if invite and status >= 300 and not self.reliable:
                self.owner.spawn(self._retransmit_until_ack(data))
            self.owner.spawn(self._expire(64 * T1 if invite or not self.reliable else 0.0))
        return data

    def resend(self) -> None:
        if self.last is not None:
            self.reply(self.last)

    async def _retransmit_until_ack(self, data: bytes) -> None:
        """Timer G until the ACK, giving up at timer H (64*T1)."""
        interval, waited = T1, 0.0
        while waited < 64 * T1:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.acked.wait(), interval)
                return
            waited += interval
            self.reply(data)
            interval = min(interval * 2, T2)

    async def _expire(self, after: float) -> None:
        await asyncio.sleep(after)
        self.owner.forget(self)


class ClientTransaction:
    """One request we sent; :meth:`next_response` yields its responses in order."""

    def __init__(self, channel: Channel, data: bytes, *, branch: str, method: str) -> None:
        self.channel = channel
        self.branch = branch
        self.method = method
        self._data = data
        self._responses: asyncio.Queue[TrunkResponse] = asyncio.Queue()
        self._answered = asyncio.Event()
        self._final = False

    def received(self, reply: TrunkResponse) -> None:
        self._answered.set()
        if reply.status >= 200:
            self._final = True
        self._responses.put_nowait(reply)

    async def run(self) -> None:
        """Send, and over UDP retransmit until answered; a 408 after 64*T1 without a final answer."""
        self.channel.send(self._data)
        interval, waited = T1, 0.0
        invite = self.method == "INVITE"
        while waited < 64 * T1:
            await asyncio.sleep(interval)
            waited += interval
            if self._final or (invite and self._answered.is_set()):
                return  # answered (an INVITE after a provisional response waits for its final one)
            if not self.channel.reliable:
                self.channel.send(self._data)
                interval = interval * 2 if invite else min(interval * 2, T2)
        if not self._final and not (invite and self._answered.is_set()):
            self._responses.put_nowait(_timeout(self.method))

    async def next_response(self) -> TrunkResponse:
        return await self._responses.get()


def _timeout(method: str) -> TrunkResponse:
    headers = sipmessage.Headers()
    return TrunkResponse(Response(status=408, call_id="", cseq=0, method=method, headers=headers), b"")
