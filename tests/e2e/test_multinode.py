"""Three ``callgate serve`` processes on one PostgreSQL and one Redis, behind a real nginx running the
repository's ``deploy/nginx/callgate.conf`` (the file docs/deploy.md shows): what must hold across nodes.

The nodes start at the same moment on an empty database, as compose or systemd starts them, and share
nothing but PostgreSQL and Redis. Clients are real: httpx, WebSockets (tests/support/rtvi_client.py),
aiortc WebRTC with ICE and DTLS on loopback (webrtc_client.py), a SIP-over-WebSocket softphone with an
aiortc peer (sip_client.py) and a webhook receiver (receiver.py). Keys are made with ``callgate keys
create``; the default team's key is the one the first start printed.

Which node served a request: every response and WebSocket handshake carries ``X-Callgate-Node`` (the
node's lease id). Creates and joins go through the balancer (round robin, nothing sticky); a join that
lands on the node that created the call is retried with a new call, so "joined on another node" is
checked, not assumed. Where a test needs a *particular* node — ending a call from a third node, a token
spent on A then tried on B, calls placed on the node that will be killed — it talks to that node's own
port, as an operator's internal client could.

Not here: reading a recording from a node other than the one that wrote it. That needs the S3
recordings store (``CALLGATE_RECORDINGS_URL``), built on another branch; it belongs here once both meet.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import websockets
from redis.asyncio import Redis

from callgate.flows.demo import demo_flow
from callgate.realtime.control import CHANNEL as CONTROL_CHANNEL
from tests.support.balancer import Balancer
from tests.support.node import ROOT, Node
from tests.support.receiver import Receiver
from tests.support.rtvi_client import RTClient, nonsilent_seconds
from tests.support.s3 import S3Server
from tests.support.services import PostgresServer, RedisServer
from tests.support.sip_client import Caller, Creds, SipClient
from tests.support.webrtc_client import RTCClient, loopback_ice

pytestmark = pytest.mark.e2e

NODES = 3
NODE_SETTINGS: dict[str, object] = {
    "node_lease_s": 2,
    "sweep_interval_s": 1,
    "drain_timeout_s": 2,
    "webhooks_allow_private": True,
    "webhooks_poll_interval_s": 0.05,
    "webhooks_backoff_base_s": 0.05,
    "webhooks_timeout_s": 5,
    "max_loop_lag_ms": 0,  # a loaded test machine lags; admission control has its own tests
    "max_stt_wait_ms": 0,
    "webrtc_host_addresses": '["127.0.0.1"]',
}
BOOKING = "I would like to book an appointment for tomorrow at three pm"
NODE_HEADER = "x-callgate-node"


@dataclass
class Cluster:
    nodes: list[Node]
    ids: list[str]
    """``ids[i]`` is ``nodes[i]``'s X-Callgate-Node."""
    lb: Balancer
    secret: str
    """The default team's key, printed by the one node that seeded the empty database."""
    env: dict[str, str]
    s3: S3Server
    bucket: str
    http: httpx.AsyncClient = field(init=False)

    def other_than(self, *node_ids: str) -> list[Node]:
        return [n for n, i in zip(self.nodes, self.ids, strict=True) if i not in node_ids]

    def id_of(self, node: Node) -> str:
        return self.ids[self.nodes.index(node)]

    def cli(self, *args: str, **settings: object) -> str:
        """Run ``callgate ARGS`` on the cluster's database; its last output line."""
        env = {**self.env, **{f"CALLGATE_{k.upper()}": str(v) for k, v in settings.items()}}
        done = subprocess.run(
            [sys.executable, "-m", "callgate.cli", *args],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def cluster(
    pg_server: PostgresServer,
    redis_server: RedisServer,
    s3_server: S3Server,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Cluster]:
    pg_server.drop_database("multinode")
    database_url = pg_server.create_database("multinode")  # empty: `callgate serve` migrates and seeds
    data = tmp_path_factory.mktemp("multinode")
    # Recordings in one S3-compatible bucket (a local moto server): any node serves any call's recording.
    bucket = s3_server.new_bucket()
    settings = {**NODE_SETTINGS, "redis_url": redis_server.url_for(5), **s3_server.settings(bucket)}
    nodes = [Node(database_url, data / f"node-{i}", serve=True, **settings) for i in range(NODES)]
    balancer: Balancer | None = None
    try:
        for node in nodes:  # all at once, as `docker compose up` or systemd at boot starts them
            node.launch()
        for node in nodes:
            node.wait_started()
        ids = [httpx.get(f"{n.url}/healthz", timeout=30).headers[NODE_HEADER] for n in nodes]
        assert len(set(ids)) == NODES
        printed = [re.findall(r"^\s+(cg_sk_\S+)$", n.log.read_text(), re.MULTILINE) for n in nodes]
        assert sorted(len(keys) for keys in printed) == [0] * (NODES - 1) + [1], printed  # seeded once
        balancer = Balancer([n.port for n in nodes], directory=data / "nginx").start()
        yield Cluster(nodes, ids, balancer, next(k[0] for k in printed if k), nodes[0].env, s3_server, bucket)
    finally:
        if balancer is not None:
            balancer.stop()
        for node in nodes:
            node.stop()
        pg_server.drop_database("multinode")


@pytest.fixture
async def lb(cluster: Cluster) -> Any:
    """An HTTP client on the balancer (and its cluster)."""
    async with httpx.AsyncClient(base_url=cluster.lb.url, timeout=60) as http:
        cluster.http = http
        yield cluster


@pytest.fixture(autouse=True)
def _loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    loopback_ice(monkeypatch)


# -- helpers -----------------------------------------------------------------------------------------


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def flow_agent(c: Cluster, key: str, **fields: object) -> str:
    body = {"name": "clinic", "flow": demo_flow().model_dump(mode="json", exclude_none=True), **fields}
    r = await c.http.post("/v1/agents", json=body, headers=auth(key))
    assert r.status_code == 201, r.text
    agent_id: str = r.json()["id"]
    return agent_id


async def create_call(
    c: Cluster, key: str, agent_id: str, *, base: str | None = None, **fields: object
) -> tuple[dict[str, Any], str]:
    """``POST /v1/web-calls`` (through the balancer unless ``base``): the answer and the creating node."""
    url = f"{base or c.lb.url}/v1/web-calls"
    r = await c.http.post(url, json={"agent_id": agent_id, **fields}, headers=auth(key))
    assert r.status_code == 201, r.text
    return r.json(), r.headers[NODE_HEADER]


async def get_call(c: Cluster, key: str, call_id: str) -> dict[str, Any]:
    r = await c.http.get(f"/v1/calls/{call_id}", headers=auth(key))
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def until(what: str, check: Callable[[], Awaitable[bool]], *, timeout: float) -> float:
    started = time.monotonic()
    while not await check():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.2)
    return time.monotonic() - started


async def settled(c: Cluster, key: str, call_id: str) -> dict[str, Any]:
    async def over() -> bool:
        return (await get_call(c, key, call_id))["status"] in ("ended", "failed")

    await until(f"{call_id} to end", over, timeout=30)
    return await get_call(c, key, call_id)


async def exchange(client: RTClient | RTCClient, text: str, *, answer: str = "") -> str:
    """Type one caller turn and wait for the agent's sentence that matches ``answer`` (a regex; the
    greeting may still be arriving when the first turn is typed, so "the next sentence" is not enough)."""
    since = time.monotonic()
    if isinstance(client, RTClient):
        await client.send("send-text", {"content": text})
    else:
        client.send("send-text", {"content": text})
    async with asyncio.timeout(30):
        while True:
            said = [m["data"]["text"] for m in client.messages("bot-tts-text", since=since)]
            found = next((t for t in said if re.search(answer, t, re.IGNORECASE)), None)
            if found is not None:
                return found
            await client.wait_for("bot-tts-text", since=time.monotonic())


@dataclass
class Joined:
    call: dict[str, Any]
    created_on: str
    client: Any
    """An :class:`RTClient` or :class:`RTCClient`, joined (closed when the block ends)."""
    joined_on: str


@asynccontextmanager
async def joined_elsewhere(
    c: Cluster, key: str, agent_id: str, *, transport: str = "websocket"
) -> AsyncIterator[Joined]:
    """A text call created and joined, both through the balancer, on two different nodes: round robin
    makes that the rule, and a join that lands on the creating node is retried with a new call."""
    for _ in range(5):
        call, created_on = await create_call(c, key, agent_id, mode="text", transport=transport)
        client: RTClient | RTCClient
        if transport == "webrtc":
            client = RTCClient(str(call["webrtc_offer_url"]), str(call["token"]), mode="text")
            await client.__aenter__()
            joined_on = client.answer_headers[NODE_HEADER]
        else:
            client = RTClient(str(call["websocket_url"]), mode="text")
            await client.__aenter__()
            joined_on = client.handshake_headers[NODE_HEADER]
        try:
            if joined_on != created_on:
                yield Joined(call, created_on, client, joined_on)
                return
        finally:
            await client.__aexit__(None, None, None)
    raise AssertionError("five joins in a row landed on the creating node: is the balancer balancing?")


# -- tests -------------------------------------------------------------------------------------------


async def test_a_call_created_on_one_node_is_joined_on_another_over_each_transport(lb: Cluster) -> None:
    c, key = lb, lb.secret
    agent_id = await flow_agent(c, key)

    # RTVI over WebSocket. The answer's URL points at the balancer (Host and X-Forwarded-* pass through).
    async with joined_elsewhere(c, key, agent_id) as joined:
        call, ws = joined.call, joined.client
        assert str(call["websocket_url"]).startswith(f"{c.lb.ws_url}/v1/calls/{call['id']}/ws?token=")
        await exchange(ws, BOOKING, answer="tomorrow")

        async def stored() -> bool:  # read back through the balancer, from whichever node answers
            body = await get_call(c, key, call["id"])
            assert body["status"] == "in_progress"
            return any(t["role"] == "user" and "appointment" in t["text"] for t in body["transcript"])

        await until("the caller's turn to be stored", stored, timeout=30)
        await ws.send("disconnect-bot")
        await ws.wait_for("server-message")
    assert (await settled(c, key, call["id"]))["end_reason"] == "caller_hangup"

    # WebRTC: SDP offer/answer through the balancer, then ICE and DTLS straight to the joining node;
    # RTVI rides the data channel (SCTP over DTLS), so the turn below crossed a real media connection.
    async with joined_elsewhere(c, key, agent_id, transport="webrtc") as joined:
        call, rtc = joined.call, joined.client
        assert str(call["webrtc_offer_url"]).startswith(c.lb.url)
        assert rtc.pc.connectionState == "connected"
        assert "a=fingerprint:" in rtc.answer_sdp and "127.0.0.1" in rtc.answer_sdp
        await exchange(rtc, BOOKING, answer="tomorrow")
        assert (await get_call(c, key, call["id"]))["status"] == "in_progress"
        rtc.send("disconnect-bot")
        await rtc.wait_for("server-message")
    assert (await settled(c, key, call["id"]))["end_reason"] == "caller_hangup"

    # SIP over WebSocket: a softphone on /sip through the balancer, an audio call (espeak-ng and
    # pocketsphinx keep it light); the greeting is heard over the aiortc media path.
    sip_agent = await flow_agent(c, key, stt={"engine": "pocketsphinx"}, tts={"engine": "espeak"})
    call, created_on = await create_call(c, key, sip_agent, transport="sip")
    sip = call["sip"]
    assert sip["ws_url"] == f"{c.lb.ws_url}/sip"
    creds = Creds(sip["sip_username"], sip["sip_password"], sip["sip_domain"])
    async with AsyncExitStack() as stack:
        for _ in range(5):  # connecting spends nothing: reconnect until the socket is on another node
            client = await stack.enter_async_context(SipClient(sip["ws_url"], creds))
            assert client.ws.response is not None
            if client.ws.response.headers[NODE_HEADER] != created_on:
                break
            await stack.aclose()
        else:
            raise AssertionError("five SIP sockets in a row landed on the creating node")
        assert (await client.register()).code == 200
        caller = Caller(client)
        try:
            answer = await caller.invite(sip["target"], sip["headers"])
            assert answer.code == 200, answer.phrase

            async def heard() -> bool:
                return nonsilent_seconds(caller.heard.since(0), 16000) >= 0.5

            await until("the greeting to be heard", heard, timeout=30)
            assert (await get_call(c, key, call["id"]))["status"] == "in_progress"
            assert (await caller.in_dialog("BYE")).code == 200
        finally:
            await caller.close()
    assert (await settled(c, key, call["id"]))["end_reason"] == "caller_hangup"

    # Its recording went to the shared bucket; every node serves the same bytes.
    async def recorded() -> bool:
        return (await get_call(c, key, call["id"]))["recording_url"] is not None

    await until("the recording to be kept", recorded, timeout=30)
    served = []
    for node in c.nodes:
        async with httpx.AsyncClient(base_url=node.url, timeout=30) as direct:
            r = await direct.get(f"/v1/calls/{call['id']}/recording", headers=auth(key))
            assert r.status_code == 200 and r.headers["content-type"] == "audio/wav", r.text
            served.append(r.content)
    [kept] = [k for k in c.s3.keys(c.bucket) if call["id"] in k]
    assert served == [c.s3.object_bytes(c.bucket, kept)] * len(c.nodes) and served[0][:4] == b"RIFF"


async def test_an_end_from_a_third_node_reaches_the_node_holding_the_call(lb: Cluster) -> None:
    c, key = lb, lb.secret
    agent_id = await flow_agent(c, key)
    async with joined_elsewhere(c, key, agent_id) as joined:
        call, ws = joined.call, joined.client
        (third,) = c.other_than(joined.created_on, joined.joined_on)
        await exchange(ws, BOOKING, answer="tomorrow")
        # Listen on the control channel: the end must travel over Redis (each node also polls the
        # database for calls ended elsewhere, which alone would end the call a little later).
        redis = Redis.from_url(c.env["CALLGATE_REDIS_URL"])
        control = redis.pubsub()
        try:
            await control.subscribe(CONTROL_CHANNEL)
            r = await c.http.post(f"{third.url}/v1/calls/{call['id']}/end", headers=auth(key))
            assert r.status_code in (200, 202), r.text
            assert r.headers[NODE_HEADER] == c.id_of(third)
            ended = await ws.wait_for("server-message", timeout=30)
            assert ended["data"] == {"type": "call-ended", "reason": "api_request"}
            published = []
            async with asyncio.timeout(10):
                while not published:
                    message = await control.get_message(ignore_subscribe_messages=True, timeout=1)
                    if message is not None:
                        published.append(json.loads(message["data"]))
            assert published[0] == {"op": "end", "call_id": call["id"], "reason": "api_request"}
        finally:
            await control.aclose()
            await redis.aclose()
    body = await settled(c, key, call["id"])
    assert (body["status"], body["end_reason"]) == ("ended", "api_request")


async def test_a_keys_rate_limit_is_one_budget_for_all_nodes(lb: Cluster) -> None:
    c = lb
    key = c.cli("keys", "create", "--type", "secret", "--team", "limits", "--rate-limit", "6/hour")
    served_by = []
    for _ in range(6):
        r = await c.http.get("/v1/agents", headers=auth(key))
        assert r.status_code == 200, r.text
        served_by.append(r.headers[NODE_HEADER])
    assert len(set(served_by)) == NODES  # the budget was spent on every node
    for node in c.nodes:  # and every node now refuses the key
        r = await c.http.get(f"{node.url}/v1/agents", headers=auth(key))
        assert r.status_code == 429, r.text
        assert r.json()["code"] == "rate_limited" and int(r.headers["Retry-After"]) > 0
    r = await c.http.get("/v1/agents", headers=auth(c.secret))
    assert r.status_code == 200  # another key's budget is its own


async def test_a_call_token_spent_on_one_node_is_refused_on_the_others(lb: Cluster) -> None:
    c, key = lb, lb.secret
    agent_id = await flow_agent(c, key)
    call, _ = await create_call(c, key, agent_id, mode="text")
    first, *others = c.nodes
    path = urlsplit(str(call["websocket_url"]))
    async with RTClient(f"ws://127.0.0.1:{first.port}{path.path}?{path.query}", mode="text") as held:
        for node in others:
            async with websockets.connect(f"ws://127.0.0.1:{node.port}{path.path}?{path.query}") as again:
                with pytest.raises(websockets.ConnectionClosed):
                    async with asyncio.timeout(30):
                        await again.recv()
                assert again.close_code == 4409  # token_reused
        await exchange(held, BOOKING, answer="tomorrow")  # the first join is untouched
        await held.send("disconnect-bot")
        await held.wait_for("server-message")
    await settled(c, key, call["id"])


async def test_the_team_live_call_cap_holds_across_nodes(lb: Cluster) -> None:
    c = lb
    key = c.cli("keys", "create", "--type", "secret", "--team", "capped", default_team_max_live_calls=2)
    agent_id = await flow_agent(c, key)
    a, b, third = c.nodes
    held = []
    for node in (a, b):  # one live call on each of two nodes
        call, _ = await create_call(c, key, agent_id, mode="text")
        path = urlsplit(str(call["websocket_url"]))
        client = RTClient(f"ws://127.0.0.1:{node.port}{path.path}?{path.query}", mode="text")
        await client.__aenter__()
        held.append((call, client))
    try:
        for node in c.nodes:  # no node creates a third, whichever holds the two
            r = await c.http.post(
                f"{node.url}/v1/web-calls", json={"agent_id": agent_id, "mode": "text"}, headers=auth(key)
            )
            assert (r.status_code, r.json()["code"]) == (429, "concurrency_limit"), r.text
        first_call, first = held.pop(0)
        await first.send("disconnect-bot")
        await first.wait_for("server-message")
        await first.__aexit__(None, None, None)
        await settled(c, key, first_call["id"])
        r = await c.http.post(
            f"{third.url}/v1/web-calls", json={"agent_id": agent_id, "mode": "text"}, headers=auth(key)
        )
        assert r.status_code == 201, r.text  # room again, on the node that held neither
    finally:
        for _, client in held:
            await client.__aexit__(None, None, None)


async def test_the_webhook_outbox_is_delivered_once_with_every_node_dispatching(lb: Cluster) -> None:
    c = lb
    key = c.cli("keys", "create", "--type", "secret", "--team", "hooks")
    receiver = Receiver()
    receiver.start()
    try:
        events = ["call.created", "call.started", "call.ended", "transcript.final"]
        r = await c.http.post(
            "/v1/webhook-endpoints", json={"url": receiver.url, "events": events}, headers=auth(key)
        )
        assert r.status_code == 201, r.text
        receiver.secrets = {"endpoint": r.json()["secret"]}
        agent_id = await flow_agent(c, key)
        call_ids = []
        for _ in range(4):
            async with joined_elsewhere(c, key, agent_id) as joined:
                call, ws = joined.call, joined.client
                await exchange(ws, BOOKING, answer="tomorrow")
                await ws.send("disconnect-bot")
                await ws.wait_for("server-message")
            call_ids.append(call["id"])
        turns = {i: len((await settled(c, key, i))["transcript"]) for i in call_ids}
        expected = sum(3 + n for n in turns.values())  # created, started, ended + one per turn
        await receiver.wait_for(expected, timeout=60)
        await asyncio.sleep(2)  # a second delivery of anything would arrive by now
    finally:
        receiver.stop()
    acked = receiver.acked()
    assert len(acked) == expected, Counter(h.payload["type"] for h in acked)
    assert len({h.id for h in acked}) == len(acked)  # no message delivered twice
    assert all(h.verified_by == ["endpoint"] for h in acked)
    per_call = Counter(
        (h.payload["data"].get("call_id") or h.payload["data"]["id"], h.payload["type"]) for h in acked
    )
    for call_id, n in turns.items():
        for kind in ("call.created", "call.started", "call.ended"):
            assert per_call[(call_id, kind)] == 1, (call_id, kind)
        assert per_call[(call_id, "transcript.final")] == n


async def test_kill_9_of_one_node_ends_its_calls_and_spares_the_others(lb: Cluster) -> None:
    """Runs last: the killed node stays down (the balancer routes around it)."""
    c, key = lb, lb.secret
    agent_id = await flow_agent(c, key)
    placed: dict[str, list[tuple[str, RTClient]]] = {}
    for node in c.nodes:  # two live calls on each node, one exchange each
        for _ in range(2):
            call, _ = await create_call(c, key, agent_id, mode="text")
            path = urlsplit(str(call["websocket_url"]))
            client = RTClient(f"ws://127.0.0.1:{node.port}{path.path}?{path.query}", mode="text")
            await client.__aenter__()
            await exchange(client, BOOKING, answer="tomorrow")
            placed.setdefault(c.id_of(node), []).append((call["id"], client))
    for calls in placed.values():  # stored: what a node wrote before it died is kept

        async def recorded(call_ids: list[str] = [i for i, _ in calls]) -> bool:  # noqa: B006
            bodies = [await get_call(c, key, i) for i in call_ids]
            return all([t["role"] for t in b["transcript"]][-2:] == ["user", "agent"] for b in bodies)

        await until("the exchanges to be stored", recorded, timeout=30)
    victim = c.nodes[-1]
    lost = placed.pop(c.id_of(victim))
    try:
        victim.kill()
        for _, client in lost:  # their sockets died with the node
            await client.__aexit__(None, None, None)

        async def all_lost() -> bool:
            bodies = [await get_call(c, key, call_id) for call_id, _ in lost]
            return all(b["status"] == "failed" for b in bodies)

        await until("the killed node's calls to end", all_lost, timeout=30)
        for call_id, _ in lost:
            body = await get_call(c, key, call_id)
            assert body["end_reason"] == "node_lost"
            assert [t["role"] for t in body["transcript"]][-2:] == ["user", "agent"]  # kept what it had

        # The other nodes' calls run on untouched: still live, still answering.
        for calls in placed.values():
            for call_id, client in calls:
                assert (await get_call(c, key, call_id))["status"] == "in_progress"
                await exchange(client, "Thank you")  # the agent still answers, and its turns are stored

                async def answered(call_id: str = call_id) -> bool:
                    turns = (await get_call(c, key, call_id))["transcript"]
                    said = [(t["role"], t["text"]) for t in turns]
                    return ("user", "Thank you") in said and said[-1][0] == "agent"

                await until("the new exchange to be stored", answered, timeout=30)
        # And the balancer keeps creating calls on the nodes left.
        for _ in range(4):
            _, node_id = await create_call(c, key, agent_id, mode="text")
            assert node_id != c.id_of(victim)
    finally:
        for calls in placed.values():
            for _, client in calls:
                await client.send("disconnect-bot")
                await client.__aexit__(None, None, None)


def _directives(text: str) -> list[str]:
    lines = (re.sub(r"\s+#.*$|^\s*#.*$", "", line).strip() for line in text.splitlines())
    return [" ".join(line.split()) for line in lines if line]


def test_the_deploy_guide_shows_the_nginx_file_this_test_runs() -> None:
    """docs/deploy.md shows deploy/nginx/callgate.conf without its comments: the same directives."""
    guide = (ROOT / "docs" / "deploy.md").read_text()
    shown = re.search(r"```nginx\n# deploy/nginx/callgate.conf\n(.*?)```", guide, re.DOTALL)
    assert shown is not None
    assert _directives(shown.group(1)) == _directives((ROOT / "deploy/nginx/callgate.conf").read_text())
