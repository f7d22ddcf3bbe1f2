"""Webhook delivery throughput: signed deliveries per second from one node to a local receiver.

    python bench/webhooks.py               # 2,000 deliveries; writes "## Webhooks: deliveries per second"
    python bench/webhooks.py --events 300 --quick    # prints, writes nothing

What it does: starts ``callgate serve`` (one worker, SQLite, a fresh data dir) in a subprocess with
``CALLGATE_WEBHOOKS_ALLOW_PRIVATE=true``, and a receiver in this process: a minimal asyncio HTTP/1.1
server that answers ``204`` at once and records each ``webhook-id`` (it does not verify signatures, so
that its own CPU does not cap the figure; the tests verify them). It creates ``--events`` web calls
(each writes a ``call.created`` event) *before* any endpoint exists, then adds an endpoint for the
receiver and queues every event to it with one ``POST /v1/webhook-replays``. The clock runs from that
request to the last delivery received. So the figure is the dispatcher's drain rate: claim
(``FOR UPDATE SKIP LOCKED`` on PostgreSQL, the group-committed writer on SQLite), sign (HMAC-SHA256,
Standard Webhooks), POST through the outbound guard, and record every attempt.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections import Counter

from _server import BenchServer, Machine, write_section


class _Receiver(asyncio.Protocol):
    """HTTP/1.1 keep-alive: reads a request (headers + Content-Length body), answers 204."""

    seen: Counter[str] = Counter()
    last_at = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while b"\r\n\r\n" in self.buffer:
            head, _, rest = self.buffer.partition(b"\r\n\r\n")
            headers = {}
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                headers[name.strip().lower()] = value.strip()
            length = int(headers.get(b"content-length", b"0"))
            if len(rest) < length:
                return
            self.buffer = rest[length:]
            _Receiver.seen[headers.get(b"webhook-id", b"").decode()] += 1
            _Receiver.last_at = time.perf_counter()
            self.transport.write(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n")


async def run(events: int) -> dict[str, float]:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_Receiver, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    env = {
        "CALLGATE_WEBHOOKS_ALLOW_PRIVATE": "true",
        "CALLGATE_SPEECH_WARMUP": "false",
        "CALLGATE_LOG_LEVEL": "WARNING",
    }
    with BenchServer(env=env, log_level="WARNING") as cg:
        api = cg.api()
        agent = cg.create_agent({"name": "bench", "prompt": "Be brief."})
        started = time.time()
        for _ in range(events):
            cg.web_call(agent)
        r = api.post(
            "/v1/webhook-endpoints",
            json={"url": f"http://127.0.0.1:{port}/hooks", "events": ["call.created"]},
        )
        r.raise_for_status()
        t0 = time.perf_counter()
        body = {
            "created_after": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started - 60)),
            "created_before": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 60)),
            "event_types": ["call.created"],
        }
        queued = (await asyncio.to_thread(api.post, "/v1/webhook-replays", json=body)).json()["deliveries"]
        while sum(_Receiver.seen.values()) < queued:
            await asyncio.sleep(0.01)
            if time.perf_counter() - t0 > 600:
                raise RuntimeError(f"only {sum(_Receiver.seen.values())} of {queued} arrived")
        elapsed = _Receiver.last_at - t0
    server.close()
    doubles = sum(1 for n in _Receiver.seen.values() if n > 1)
    return {"deliveries": queued, "seconds": elapsed, "rate": queued / elapsed, "doubles": doubles}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--quick", action="store_true", help="print only; do not write BENCHMARKS.md")
    args = parser.parse_args()
    result = asyncio.run(run(args.events))
    line = (
        f"{result['deliveries']:.0f} deliveries in {result['seconds']:.2f} s: "
        f"**{result['rate']:.0f} deliveries/s** (doubles: {result['doubles']:.0f})"
    )
    print(line)
    if not args.quick:
        write_section(
            "Webhooks: deliveries per second",
            f"`python bench/webhooks.py --events {args.events}` — one node, SQLite, local receiver "
            f"answering 204.\n\n{line}\n\nMachine: {Machine().line()}",
        )


if __name__ == "__main__":
    main()
