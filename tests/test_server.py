"""The guarded uvicorn protocols ``callgate serve`` runs, probed with raw sockets against a real server:
slow or idle clients are timed out, one address cannot hold every connection, hostile WebSocket frames
are refused with one warning and no traceback (issue 11 #8, #9)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import websockets

from callgate.log import JSONFormatter, RedactingFormatter
from callgate.server import ConnectionLimits
from tests.support.live import LiveServer, serve
from tests.support.world import make_settings

LIMITS = ConnectionLimits(header_timeout_s=1.0, idle_timeout_s=1.0, max_per_client=4)


@pytest.fixture
async def guarded(tmp_path: Path, sqlite_template: Path) -> AsyncIterator[LiveServer]:
    path = tmp_path / "callgate.db"
    path.write_bytes(sqlite_template.read_bytes())
    async for server in serve(make_settings(tmp_path, f"sqlite+aiosqlite:///{path}"), limits=LIMITS):
        yield server


async def connect(live: LiveServer) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = live.url.removeprefix("http://").split(":")
    return await asyncio.open_connection(host, int(port))


async def read_until_closed(reader: asyncio.StreamReader, *, timeout: float = 10.0) -> tuple[bytes, float]:
    """Everything the server sends until it closes, and the monotonic time it closed."""
    async with asyncio.timeout(timeout):
        data = await reader.read()
    return data, time.monotonic()


async def test_slow_headers_are_timed_out_with_408(guarded: LiveServer) -> None:
    async def slow_client() -> tuple[bytes, float]:
        reader, writer = await connect(guarded)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        closed = asyncio.create_task(read_until_closed(reader))
        for n in range(30):  # a header line every 0.3 s, never the blank line: the probe's slowloris
            if closed.done():
                break
            writer.write(b"X-Slow-%d: y\r\n" % n)
            await asyncio.sleep(0.3)
        writer.close()
        return await closed

    start = time.monotonic()
    results = await asyncio.gather(*(slow_client() for _ in range(4)))
    for data, closed_at in results:
        assert data.startswith(b"HTTP/1.1 408 "), data
        assert b"request headers not received in time" in data
        assert closed_at - start < 3.0  # the header timeout is 1 s; the clients would go on for 9 s


async def test_a_silent_connection_is_timed_out(guarded: LiveServer) -> None:
    reader, writer = await connect(guarded)
    start = time.monotonic()
    try:
        data, closed_at = await read_until_closed(reader)
    finally:
        writer.close()
    assert data.startswith(b"HTTP/1.1 408 ") and 0.8 < closed_at - start < 3.0


async def test_a_stalled_request_body_is_timed_out(
    guarded: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    reader, writer = await connect(guarded)
    writer.write(b"POST /v1/agents HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
    start = time.monotonic()
    try:
        data, closed_at = await read_until_closed(reader)
    finally:
        writer.close()
    assert data.startswith(b"HTTP/1.1 408 ") and b"request body" in data
    assert closed_at - start < 3.0
    await asyncio.sleep(0.2)  # the app's request task sees the disconnect and ends quietly
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_prompt_clients_are_served_on_kept_alive_connections(guarded: LiveServer) -> None:
    reader, writer = await connect(guarded)
    for _ in range(3):
        for piece in (b"GET /healthz HTTP/1.1\r\n", b"Host: x\r\n", b"\r\n"):  # headers in pieces
            writer.write(piece)
            await asyncio.sleep(0.2)
        status = await reader.readline()
        assert status.startswith(b"HTTP/1.1 200 "), status
        length = 0
        while (line := await reader.readline()) != b"\r\n":
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        await reader.readexactly(length)
        await asyncio.sleep(0.7)  # idle between requests: the header clock starts at the next request
    writer.close()


async def test_one_address_holds_at_most_the_cap(guarded: LiveServer) -> None:
    held = [await connect(guarded) for _ in range(LIMITS.max_per_client)]
    try:
        reader, writer = await connect(guarded)
        try:
            data, _ = await read_until_closed(reader, timeout=0.9)  # refused at once, before any timeout
        finally:
            writer.close()
        assert data.startswith(b"HTTP/1.1 503 ") and b"too many connections" in data
        _, first = held.pop()
        first.close()
        await first.wait_closed()
        await asyncio.sleep(0.1)
        assert (await guarded.world.client.get("/healthz")).status_code == 200  # a slot is free again
    finally:
        for _, w in held:
            w.close()


async def test_websockets_count_towards_the_cap(guarded: LiveServer) -> None:
    url = guarded.url.replace("http://", "ws://") + "/sip"
    sockets = [
        await websockets.connect(url, subprotocols=[websockets.Subprotocol("sip")])
        for _ in range(LIMITS.max_per_client)
    ]
    try:
        await asyncio.sleep(1.5)  # past the header timeout: an open WebSocket is not timed out by it
        with pytest.raises(websockets.InvalidStatus) as refused:
            extra = await websockets.connect(url, subprotocols=[websockets.Subprotocol("sip")])
            await extra.close()
        assert refused.value.response.status_code == 503
        assert all(ws.close_code is None for ws in sockets)
    finally:
        for ws in sockets:
            await ws.close()


@pytest.mark.parametrize("path", ["/sip", "rtvi"])
async def test_a_text_frame_that_is_not_utf8_closes_1007_with_one_warning(
    guarded: LiveServer, caplog: pytest.LogCaptureFixture, path: str
) -> None:
    caplog.set_level(logging.INFO)
    if path == "rtvi":
        team = await guarded.world.team("acme")
        call = await guarded.web_call(team, await guarded.flow_agent(team), mode="text")
        url, protocols = str(call["websocket_url"]), None
    else:
        url, protocols = guarded.url.replace("http://", "ws://") + "/sip", [websockets.Subprotocol("sip")]
    async with websockets.connect(url, subprotocols=protocols) as ws:
        for _ in range(3):
            with pytest.raises(websockets.ConnectionClosed):
                await ws.send(b"\xff\xfe not utf-8", text=True)
                await asyncio.wait_for(ws.recv(), 5)
        assert ws.close_code == 1007
    if path == "rtvi":
        for _ in range(40):
            r = await guarded.world.client.get(f"/v1/calls/{call['id']}", headers=team.auth())
            if r.json()["status"] == "ended":
                break
            await asyncio.sleep(0.05)
        assert r.json()["end_reason"] == "transport_lost"
    warnings = [r for r in caplog.records if "not UTF-8" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING and warnings[0].exc_info is None
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


@pytest.mark.parametrize("shape", ["unsigned", "signed", "garbage"])
async def test_call_tokens_in_logged_websocket_paths_are_redacted(
    guarded: LiveServer, caplog: pytest.LogCaptureFixture, shape: str
) -> None:
    caplog.set_level(logging.INFO)
    caplog.set_level(logging.INFO, logger="uvicorn.error")  # an earlier in-process server may have raised it
    team = await guarded.world.team("acme")
    call = await guarded.web_call(team, await guarded.flow_agent(team), mode="text")
    real = str(call["token"])
    token = {"unsigned": real.rsplit(".", 1)[0] + ".", "signed": real, "garbage": "not-a-jwt-but-secret"}[
        shape
    ]
    url = str(call["websocket_url"]).split("?", 1)[0] + "?token=" + token
    async with websockets.connect(url):
        await asyncio.sleep(0.1)  # accepted (and, but for the signed token, refused 4401)
    logged = [r for r in caplog.records if token in r.getMessage()]
    assert logged, "uvicorn logs the WebSocket path with its query: the test must see that line"
    secret = token.split(".")[1] if "." in token else token  # the claims, or the whole garbage value
    for record in caplog.records:
        for formatter in (JSONFormatter(), RedactingFormatter("%(levelname)s %(name)s %(message)s")):
            assert secret not in formatter.format(record), record.getMessage()
