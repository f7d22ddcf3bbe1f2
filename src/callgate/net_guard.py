"""The outbound-request guard: every HTTP request callgate makes on a customer's behalf goes through it.

Webhook deliveries and agents' HTTP tools send requests to URLs that customers choose. Without a guard a
customer could make callgate reach its own network: a database on ``10.0.0.5``, an admin port on
``127.0.0.1``, or the cloud metadata service at ``169.254.169.254`` that hands out credentials.

The guard sits where connections are opened (an httpcore network backend), not where URLs are parsed:
it resolves the host itself, refuses if *any* address is not public, and connects to the address it
checked. So DNS names that resolve to private addresses, DNS answers that change between a check and
the connection (rebinding), and redirects to private hosts are all refused the same way, on every hop.

    policy = OutboundPolicy(allow_private=settings.webhooks_allow_private)
    async with guarded_client(policy, timeout=10) as client:
        await client.post(url, content=body)       # raises OutboundRefused for a private address

``allow_private`` (``CALLGATE_WEBHOOKS_ALLOW_PRIVATE``) admits private, loopback and link-local
addresses, for development and tests. Cloud metadata addresses are refused even then.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx

from callgate.errors import ValidationFailed

__all__ = ["OutboundPolicy", "OutboundRefused", "check_url", "guarded_client", "refusal"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Awaitable[list[str]]]

METADATA: frozenset[IPAddress] = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean …
        "169.254.170.2",  # AWS ECS task credentials
        "fd00:ec2::254",  # AWS over IPv6
        "100.100.100.200",  # Alibaba Cloud
        "192.0.0.192",  # Oracle Cloud
    )
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class OutboundRefused(ValidationFailed):
    """The URL is not allowed as a destination (scheme, or an address that is not public)."""

    code, title = "outbound_refused", "The URL points to an address callgate may not call"


def _unwrap(ip: IPAddress) -> IPAddress:
    """The IPv4 address an IPv6 address carries (mapped, NAT64, 6to4), else ``ip``."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
        if ip in _NAT64:
            return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if ip.sixtofour is not None:
            return ip.sixtofour
        if ip.teredo is not None:
            return ip.teredo[1]
    return ip


def _kind(ip: IPAddress) -> str | None:
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local"
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_multicast:
        return "multicast"
    if isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local:
        return "site-local"
    if ip.is_private:
        return "private"
    if not ip.is_global:
        return "reserved"
    return None


@dataclass(frozen=True, slots=True)
class OutboundPolicy:
    """Which addresses outbound requests may reach.

    ``allowed_networks`` are exceptions an operator trusts (e.g. one internal range), allowed even when
    ``allow_private`` is off. ``resolver`` maps ``(host, port)`` to addresses (default: the system's).
    """

    allow_private: bool = False
    allowed_networks: tuple[IPNetwork, ...] = ()
    resolver: Resolver | None = field(default=None, compare=False)

    @classmethod
    def of(cls, *, allow_private: bool, allowed_networks: Iterable[str] = ()) -> OutboundPolicy:
        return cls(allow_private, tuple(ipaddress.ip_network(n, strict=False) for n in allowed_networks))

    async def resolve(self, host: str, port: int) -> list[str]:
        if self.resolver is not None:
            return await self.resolver(host, port)
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        return list(dict.fromkeys(str(info[4][0]) for info in infos))


def refusal(address: str, policy: OutboundPolicy) -> str | None:
    """Why ``address`` (an IP literal) may not be called under ``policy``, or None if it may."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone id
    inner = _unwrap(ip)
    if ip in METADATA or inner in METADATA:
        return f"{address} is a cloud metadata address"
    if any(ip in net or inner in net for net in policy.allowed_networks):
        return None
    kind = _kind(ip) or _kind(inner)
    if kind is None or policy.allow_private:
        return None
    return f"{address} is a {kind} address"


async def check_url(url: str, policy: OutboundPolicy, *, field: str | None = None) -> list[str]:
    """Refuse ``url`` (raise :class:`OutboundRefused`) unless it is http(s) and every address its host
    resolves to is allowed; return those addresses. Connections are checked again when they open.

    ``field`` (e.g. ``"body.url"``) names the request field in the error, for API validation."""
    try:
        return await _check_url(url, policy)
    except OutboundRefused as exc:
        if field is None:
            raise
        raise OutboundRefused(
            exc.detail, errors=[{"field": field, "message": exc.detail, "type": exc.code}]
        ) from exc


async def _check_url(url: str, policy: OutboundPolicy) -> list[str]:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise OutboundRefused(f"only http and https URLs with a host can be called, not {url!r}")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return await _allowed_addresses(parts.hostname, port, policy)


async def _allowed_addresses(host: str, port: int, policy: OutboundPolicy) -> list[str]:
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
        addresses = [host]
    except ValueError:
        try:
            addresses = await policy.resolve(host, port)
        except OSError as exc:
            raise OutboundRefused(f"cannot resolve {host!r}: {exc}") from exc
    if not addresses:
        raise OutboundRefused(f"{host!r} resolves to no address")
    for address in addresses:
        if (reason := refusal(address, policy)) is not None:
            raise OutboundRefused(f"{host!r} is refused: {reason}")
    return addresses


class _GuardedBackend(httpcore.AsyncNetworkBackend):
    """Opens TCP connections only to checked addresses, and to the very address that was checked."""

    def __init__(self, policy: OutboundPolicy) -> None:
        self._policy = policy
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        addresses = await _allowed_addresses(host.strip("[]"), port, self._policy)
        error: Exception | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(
                    address, port, timeout=timeout, local_address=local_address, socket_options=socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
        assert error is not None
        raise error

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise OutboundRefused("unix sockets cannot be called")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class _GuardedTransport(httpx.AsyncHTTPTransport):
    def __init__(self, policy: OutboundPolicy, *, limits: httpx.Limits) -> None:
        super().__init__(trust_env=False, limits=limits)
        # httpx has no public way to give its pool a network backend; the pool is rebuilt the way
        # AsyncHTTPTransport builds it (no proxy: environment proxies would bypass the guard).
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=_GuardedBackend(policy),
        )


def guarded_client(
    policy: OutboundPolicy,
    *,
    timeout: float,
    follow_redirects: bool = True,
    max_redirects: int = 3,
    limits: httpx.Limits | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` whose every connection (redirects included) passes the guard.

    A refused address raises :class:`OutboundRefused` from the request call. Close the client
    (``async with`` or ``aclose()``) when done.
    """
    return httpx.AsyncClient(
        transport=_GuardedTransport(policy, limits=limits or httpx.Limits(max_connections=100)),
        timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
        follow_redirects=follow_redirects,
        max_redirects=max_redirects,
        trust_env=False,
        headers=headers,
    )
