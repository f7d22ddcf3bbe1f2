"""The outbound guard: private addresses, names resolving to them, and redirects to them are refused."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from callgate.net_guard import OutboundPolicy, OutboundRefused, check_url, guarded_client, refusal
from tests.support.receiver import Receiver, Reply

STRICT = OutboundPolicy()
LOOSE = OutboundPolicy(allow_private=True)

REFUSED = [
    "10.0.0.1", "10.255.255.255", "172.16.0.1", "172.31.255.254", "192.168.1.1",  # RFC 1918
    "127.0.0.1", "127.8.9.10", "0.0.0.0",  # loopback, unspecified
    "169.254.1.1", "100.64.0.1", "198.18.0.1",  # link-local, CGNAT, benchmarking
    "224.0.0.1", "240.0.0.1",  # multicast, reserved
    "::1", "::", "fe80::1", "fd12:3456::1", "fc00::1",  # IPv6 loopback, unspecified, link-local, ULA
    "fec0::1", "ff02::1",  # site-local, multicast
    "::ffff:10.0.0.1", "::ffff:127.0.0.1",  # IPv4-mapped
    "64:ff9b::a00:1", "2002:a00:1::1",  # NAT64 and 6to4 carrying 10.0.0.1
    "fe80::1%eth0",  # a zone id
]  # fmt: skip
METADATA = ["169.254.169.254", "fd00:ec2::254", "100.100.100.200", "192.0.0.192", "::ffff:169.254.169.254"]
PUBLIC = ["8.8.8.8", "1.1.1.1", "93.184.216.34", "2606:4700:4700::1111", "64:ff9b::808:808"]


@pytest.mark.parametrize("address", REFUSED)
def test_private_addresses_are_refused_unless_allowed(address: str) -> None:
    assert refusal(address, STRICT) is not None
    assert refusal(address, LOOSE) is None


@pytest.mark.parametrize("address", METADATA)
def test_metadata_addresses_are_refused_even_when_private_ones_are_allowed(address: str) -> None:
    assert "metadata" in (refusal(address, LOOSE) or "")


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_pass(address: str) -> None:
    assert refusal(address, STRICT) is None


def test_allowed_networks_are_exceptions() -> None:
    policy = OutboundPolicy.of(allow_private=False, allowed_networks=["10.1.2.0/24"])
    assert refusal("10.1.2.3", policy) is None
    assert refusal("10.1.3.3", policy) is not None
    assert refusal(
        "169.254.169.254", OutboundPolicy.of(allow_private=False, allowed_networks=["169.254.0.0/16"])
    )


def fake_dns(table: dict[str, list[str]]) -> OutboundPolicy:
    async def resolve(host: str, port: int) -> list[str]:
        if host not in table:
            raise OSError(f"unknown host {host}")
        return table[host]

    return OutboundPolicy(resolver=resolve)


@pytest.mark.parametrize(
    ("url", "answer"),
    [
        ("https://hooks.example.com/x", ["10.0.0.7"]),
        ("https://hooks.example.com/x", ["93.184.216.34", "192.168.0.2"]),  # any private address refuses
        ("http://v6.example.com:8080/x", ["fd00::5"]),
        ("http://meta.example.com/latest", ["169.254.169.254"]),
    ],
)
async def test_names_resolving_to_private_addresses_are_refused(url: str, answer: list[str]) -> None:
    host = url.split("/")[2].split(":")[0]
    with pytest.raises(OutboundRefused, match="refused"):
        await check_url(url, fake_dns({host: answer}))


async def test_check_url_scheme_resolution_and_field() -> None:
    assert await check_url("https://hooks.example.com/x", fake_dns({"hooks.example.com": ["8.8.4.4"]})) == [
        "8.8.4.4"
    ]
    for url in ("ftp://example.com/", "file:///etc/passwd", "http:///nohost", "gopher://x"):
        with pytest.raises(OutboundRefused):
            await check_url(url, STRICT)
    with pytest.raises(OutboundRefused, match="cannot resolve"):
        await check_url("https://nowhere.invalid/", fake_dns({}))
    with pytest.raises(OutboundRefused) as caught:
        await check_url("http://localhost:9/x", STRICT, field="body.url")  # the system resolver
    assert caught.value.errors == [
        {"field": "body.url", "message": caught.value.detail, "type": "outbound_refused"}
    ]
    assert await check_url("http://[::1]:9/", LOOSE) == ["::1"]


@pytest.fixture
def second_receiver() -> Iterator[Receiver]:
    """A receiver on 127.0.0.2: loopback too, but outside the one address the tests allow."""
    r = Receiver(host="127.0.0.2")
    r.start()
    yield r
    r.stop()


ONLY_FIRST = OutboundPolicy.of(allow_private=False, allowed_networks=["127.0.0.1/32"])


async def test_the_client_refuses_before_connecting(receiver: Receiver) -> None:
    async with guarded_client(STRICT, timeout=2) as client:
        with pytest.raises(OutboundRefused):
            await client.post(receiver.url, content=b"{}")
    assert receiver.all() == []
    async with guarded_client(ONLY_FIRST, timeout=2) as client:
        assert (await client.post(receiver.url, content=b"{}")).status_code == 204
    assert len(receiver.all()) == 1


@pytest.mark.parametrize("code", [302, 307])
async def test_redirects_to_private_addresses_are_not_followed(
    receiver: Receiver, second_receiver: Receiver, code: int
) -> None:
    for target in (second_receiver.url, "http://169.254.169.254/latest/meta-data/", "http://[::1]:9/"):
        receiver.script.append(Reply(status=code, location=target))
        async with guarded_client(ONLY_FIRST, timeout=2) as client:
            with pytest.raises(OutboundRefused):
                await client.post(receiver.url, content=b"{}")
    assert second_receiver.all() == []
    # An allowed redirect target is followed.
    receiver.script.append(Reply(status=307, location=receiver.url + "/moved"))
    async with guarded_client(ONLY_FIRST, timeout=2) as client:
        r = await client.post(receiver.url, content=b"{}")
    assert r.status_code == 204 and receiver.all()[-1].path == "/hooks/moved"


async def test_dns_answers_are_pinned_to_the_checked_address(receiver: Receiver) -> None:
    """The connection goes to the address that was checked, whatever the name resolves to later."""
    answers = iter([["127.0.0.1"], ["10.9.9.9"]])

    async def rebinding(host: str, port: int) -> list[str]:
        return next(answers)

    policy = OutboundPolicy(allowed_networks=ONLY_FIRST.allowed_networks, resolver=rebinding)
    url = f"http://hooks.example.test:{receiver.port}/hooks"
    async with guarded_client(policy, timeout=2) as client:
        r = await client.post(url, content=b"{}")
    # The name exists nowhere: the request arrived because the client connected to the checked address.
    assert r.status_code == 204
    assert receiver.all()[-1].headers["host"] == f"hooks.example.test:{receiver.port}"
    async with guarded_client(policy, timeout=2) as client:  # the next connection resolves again
        with pytest.raises(OutboundRefused):
            await client.post(url, content=b"{}")
