"""Bad input on every route gets a problem document (RFC 9457) with a stable code, never a 500.

Each test walks every route of its kind on one set of objects (one database per engine, not per case),
and reports all the routes that misbehave at once.
"""

from __future__ import annotations

import base64
import itertools
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from callgate.auth.keys import KeyType
from tests.api.helpers import PROBLEM, field_names
from tests.support.world import PROMPT_AGENT, Team, World, WorldFactory

_numbers = itertools.count(3312345600)


@dataclass
class Ids:
    team: Team
    agent: str
    contact: str
    number: str
    call: str


async def make_ids(world: World) -> Ids:
    team = await world.team("acme")
    auth = team.auth()
    contact = (await world.client.post("/v1/contacts", json={"name": "Ann"}, headers=auth)).json()["id"]
    number = (
        await world.client.post("/v1/phone-numbers", json={"number": f"+{next(_numbers)}"}, headers=auth)
    ).json()["id"]
    call = (await world.client.post("/v1/web-calls", json={"agent_id": team.agent_id}, headers=auth)).json()[
        "id"
    ]
    return Ids(team, team.agent_id, contact, number, call)


@pytest.fixture
async def ids(world: World) -> Ids:
    return await make_ids(world)


@dataclass(frozen=True)
class BodyRoute:
    method: str
    path: str
    valid: dict[str, Any]
    wrong_type: dict[str, Any]
    """A body with one field of the wrong type or shape..."""
    field: str
    """...which the problem must name."""

    def url(self, ids: Ids) -> str:
        return self.path.format(agent=ids.agent, contact=ids.contact, number=ids.number, call=ids.call)

    def body(self, ids: Ids, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        filled = {k: v.format(agent=ids.agent) if isinstance(v, str) else v for k, v in self.valid.items()}
        return {**filled, **(extra or {})}


BODY_ROUTES = [
    BodyRoute("POST", "/v1/agents", PROMPT_AGENT, {"max_duration_s": "long"}, "body.max_duration_s"),
    BodyRoute("PATCH", "/v1/agents/{agent}", {"name": "n"}, {"variables": ["a"]}, "body.variables"),
    BodyRoute("POST", "/v1/web-calls", {"agent_id": "{agent}"}, {"transport": 5}, "body.transport"),
    BodyRoute("POST", "/v1/web-calls/token", {"agent_id": "{agent}"}, {"metadata": "x"}, "body.metadata"),
    BodyRoute("POST", "/v1/calls/{call}/end", {}, {"reason": ["x"]}, "body.reason"),
    BodyRoute("POST", "/v1/contacts", {"name": "n"}, {"email": "not-an-email"}, "body.email"),
    BodyRoute("PATCH", "/v1/contacts/{contact}", {"name": "n"}, {"attributes": [1]}, "body.attributes"),
    BodyRoute("POST", "/v1/phone-numbers", {"number": "+14155550000"}, {"number": "0800 123"}, "body.number"),
    BodyRoute("PATCH", "/v1/phone-numbers/{number}", {"label": "n"}, {"label": {"a": 1}}, "body.label"),
]
LIST_ROUTES = ["/v1/agents", "/v1/calls", "/v1/contacts", "/v1/phone-numbers"]


def problem_failure(r: httpx.Response, status: int, code: str | None = None) -> str | None:
    """Why ``r`` is not the expected problem document, or None if it is."""
    if r.status_code != status:
        return f"status {r.status_code} (wanted {status}): {r.text[:300]}"
    if not r.headers.get("content-type", "").startswith(PROBLEM):
        return f"content-type {r.headers.get('content-type')!r}"
    body = r.json()
    if body.get("status") != status or not body.get("detail") or not body.get("code"):
        return f"incomplete problem: {body}"
    if code is not None and body["code"] != code:
        return f"code {body['code']!r} (wanted {code!r})"
    return None


class Failures:
    def __init__(self) -> None:
        self.items: list[str] = []

    def check(self, what: str, r: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
        why = problem_failure(r, status, code)
        if why is not None:
            self.items.append(f"{what}: {why}")
            return {}
        body: dict[str, Any] = r.json()
        return body

    def add(self, message: str) -> None:
        self.items.append(message)

    def assert_none(self) -> None:
        assert not self.items, "\n".join(self.items)


async def send(world: World, ids: Ids, route: BodyRoute, content: bytes, **headers: str) -> httpx.Response:
    return await world.client.request(
        route.method,
        route.url(ids),
        content=content,
        headers={**ids.team.auth(), "content-type": "application/json", **headers},
    )


MALFORMED = [b"{", b'{"name": ', b"{'name': 'x'}", b'{"a": 1}}', b"[1,", b"nul", b'{"a": tru}', b"\xff\xfe{}"]


async def test_malformed_json_is_400(world: World, ids: Ids) -> None:
    failures = Failures()
    for route in BODY_ROUTES:
        for content in MALFORMED:
            r = await send(world, ids, route, content)
            failures.check(f"{route.method} {route.path} {content!r}", r, 400, "malformed_json")
    failures.assert_none()


async def test_wrong_types_are_422_naming_the_field(world: World, ids: Ids) -> None:
    failures = Failures()
    for route in BODY_ROUTES:
        r = await world.client.request(
            route.method, route.url(ids), json=route.body(ids, route.wrong_type), headers=ids.team.auth()
        )
        problem = failures.check(f"{route.method} {route.path}", r, 422, "validation_error")
        if problem and route.field not in field_names(problem):
            failures.add(f"{route.method} {route.path}: {route.field} not named in {problem.get('errors')}")
    failures.assert_none()


async def test_non_object_bodies_are_422(world: World, ids: Ids) -> None:
    failures = Failures()
    for route in BODY_ROUTES:
        for body in ([], [route.body(ids)], "text", 5, True):
            r = await send(world, ids, route, json.dumps(body).encode())
            failures.check(f"{route.method} {route.path} {body!r}", r, 422, "validation_error")
    failures.assert_none()


async def test_unknown_fields_are_422(world: World, ids: Ids) -> None:
    failures = Failures()
    for route in BODY_ROUTES:
        r = await world.client.request(
            route.method, route.url(ids), json=route.body(ids, {"surprise": 1}), headers=ids.team.auth()
        )
        problem = failures.check(f"{route.method} {route.path}", r, 422, "validation_error")
        if problem and "body.surprise" not in field_names(problem):
            failures.add(f"{route.method} {route.path}: body.surprise not named in {problem.get('errors')}")
    failures.assert_none()


async def test_valid_bodies_pass(world: World, ids: Ids) -> None:
    """The bodies the other tests spoil are good ones: so each refusal above is about the spoiling."""
    failures = Failures()
    for route in BODY_ROUTES:
        r = await world.client.request(
            route.method, route.url(ids), json=route.body(ids), headers=ids.team.auth()
        )
        if r.status_code >= 300:
            failures.add(f"{route.method} {route.path}: {r.status_code} {r.text}")
    failures.assert_none()


async def _chunks(data: bytes, size: int = 1000) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


async def test_oversized_bodies_are_413(world_with: WorldFactory) -> None:
    async with world_with(max_body_bytes=4096) as world:
        ids = await make_ids(world)
        failures = Failures()
        for route in BODY_ROUTES:
            big = json.dumps(route.body(ids, {"pad": "x" * 5000})).encode()
            r = await send(world, ids, route, big)
            failures.check(f"{route.method} {route.path} (Content-Length)", r, 413, "payload_too_large")
            r = await world.client.request(
                route.method,
                route.url(ids),
                content=_chunks(big),
                headers={**ids.team.auth(), "content-type": "application/json"},
            )
            assert "content-length" not in r.request.headers
            failures.check(f"{route.method} {route.path} (chunked)", r, 413, "payload_too_large")
            # Just under the cap, chunked, the body reaches the route intact.
            fits = json.dumps(route.body(ids)).encode()
            r = await world.client.request(
                route.method,
                route.url(ids),
                content=_chunks(fits, 7),
                headers={**ids.team.auth(), "content-type": "application/json"},
            )
            if r.status_code >= 300:
                failures.add(f"{route.method} {route.path} small chunked body: {r.status_code} {r.text}")
        failures.assert_none()


async def test_unknown_routes_and_methods(world: World, ids: Ids) -> None:
    failures = Failures()
    auth = ids.team.auth()
    for path in ("/v1/nothing", "/v2/agents", "/v1/agents/x/y", "/v1/calls/x/start", "/"):
        if path == "/" and (await world.client.get(path)).status_code == 200:
            continue  # the demo page is served at / when the web assets are present
        failures.check(f"GET {path}", await world.client.get(path, headers=auth), 404, "not_found")
    for method, path in (
        ("PUT", "/v1/agents"),
        ("PUT", f"/v1/agents/{ids.agent}"),
        ("DELETE", f"/v1/calls/{ids.call}"),
        ("PATCH", f"/v1/calls/{ids.call}"),
        ("GET", "/v1/web-calls"),
        ("GET", "/v1/web-calls/token"),
        ("GET", f"/v1/calls/{ids.call}/end"),
        ("POST", "/healthz"),
    ):
        r = await world.client.request(method, path, headers=auth)
        failures.check(f"{method} {path}", r, 405, "method_not_allowed")
    failures.assert_none()


def cursor_of(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


BAD_CURSORS = [
    "!!!",
    "not-base64-json",
    cursor_of({"a": 1}),
    cursor_of([1, 2]),
    cursor_of(["yesterday", "x"]),
    cursor_of([None, None]),
    cursor_of("ab"),
    cursor_of([]),
]


async def test_bad_query_parameters(world: World, ids: Ids) -> None:
    failures = Failures()
    auth = ids.team.auth()
    for path in LIST_ROUTES:
        for limit in ("0", "201", "-1", "abc", "1.5"):
            r = await world.client.get(path, params={"limit": limit}, headers=auth)
            problem = failures.check(f"{path}?limit={limit}", r, 422, "validation_error")
            if problem and "query.limit" not in field_names(problem):
                failures.add(f"{path}?limit={limit}: query.limit not named")
        for cursor in BAD_CURSORS:
            r = await world.client.get(path, params={"cursor": cursor}, headers=auth)
            failures.check(f"{path}?cursor={cursor}", r, 400, "bad_request")
    for params, field in (
        ({"created_after": "2030-01-01T00:00:00"}, "query.created_after"),  # no timezone
        ({"created_before": "2030-01-01T00:00:00"}, "query.created_before"),
        ({"created_after": "yesterday"}, "query.created_after"),
        ({"status": "bogus"}, "query.status"),
    ):
        r = await world.client.get("/v1/calls", params=params, headers=auth)
        problem = failures.check(f"/v1/calls?{params}", r, 422, "validation_error")
        if problem and field not in field_names(problem):
            failures.add(f"/v1/calls?{params}: {field} not named in {problem.get('errors')}")
    failures.assert_none()


async def test_cursor_with_a_naive_time_is_400(world: World, ids: Ids) -> None:
    """A cursor is opaque, but a client can forge one; a time without a zone must not reach the database."""
    failures = Failures()
    for path in LIST_ROUTES:
        r = await world.client.get(
            path, params={"cursor": cursor_of(["2030-01-01T00:00:00", "x"])}, headers=ids.team.auth()
        )
        failures.check(f"{path} naive cursor", r, 400, "bad_request")
    failures.assert_none()


async def test_nul_characters_are_refused_not_500(world: World, ids: Ids) -> None:
    """PostgreSQL cannot store U+0000 in text or JSONB: it must be a 4xx on every engine, never a 5xx."""
    failures = Failures()
    auth = ids.team.auth()
    cases: list[tuple[str, str, dict[str, Any] | None, dict[str, str] | None]] = [
        ("POST", "/v1/contacts", {"name": "A\x00nn"}, None),
        ("PATCH", f"/v1/contacts/{ids.contact}", {"attributes": {"k": "\x00"}}, None),
        ("POST", "/v1/agents", {**PROMPT_AGENT, "prompt": "hi\x00"}, None),
        ("PATCH", f"/v1/agents/{ids.agent}", {"name": "\x00"}, None),
        ("POST", "/v1/web-calls", {"agent_id": ids.agent, "metadata": {"k": "v\x00"}}, None),
        ("POST", "/v1/web-calls", {"agent_id": "agt_\x00"}, None),
        ("POST", "/v1/phone-numbers", {"number": "+14155550001", "label": "\x00"}, None),
        ("POST", f"/v1/calls/{ids.call}/end", {"reason": "\x00"}, None),
        ("GET", "/v1/calls", None, {"agent_id": "a\x00"}),
        ("GET", "/v1/agents/agt_%00", None, None),
    ]
    for method, path, body, params in cases:
        r = await world.client.request(method, path, json=body, params=params, headers=auth)
        if not 400 <= r.status_code < 500:
            failures.add(f"{method} {path} {body or params}: {r.status_code} {r.text[:200]}")
        elif not r.headers["content-type"].startswith(PROBLEM):
            failures.add(f"{method} {path}: content-type {r.headers['content-type']}")
    failures.assert_none()


# --- agents: prompt or flow ----------------------------------------------------------------------------

FLOW = {
    "start": "hello",
    "states": {
        "hello": {
            "say": "Hello {{company}}! Bye now?",
            "intents": [{"name": "bye", "keywords": ["bye"], "goto": "bye"}],
        },
        "bye": {"say": "Goodbye.", "end": True},
    },
}


async def test_agent_needs_exactly_one_of_prompt_or_flow(world: World) -> None:
    team = await world.team("acme")
    auth = team.auth()
    failures = Failures()
    base = {"name": "a", "variables": {"company": "Acme"}}
    for body in ({**base}, {**base, "prompt": "p", "flow": FLOW}, {**base, "prompt": None, "flow": None}):
        r = await world.client.post("/v1/agents", json=body, headers=auth)
        failures.check(f"POST /v1/agents {sorted(body)}", r, 422, "validation_error")
    bad_flows: list[dict[str, Any]] = [
        {**FLOW, "start": "nowhere"},
        {"start": "hello", "states": {}},
        {"start": "hello", "states": {"hello": {"say": "hi", "next": "gone"}}},
        {**FLOW, "states": {**FLOW["states"], "bye": {"say": "Goodbye {{unknown_name}}.", "end": True}}},
        {**FLOW, "states": {**FLOW["states"], "bye": {"say": 5, "end": "maybe"}}},
        {**FLOW, "extra": 1},
        {"states": FLOW["states"]},
    ]
    for flow in bad_flows:
        r = await world.client.post("/v1/agents", json={**base, "flow": flow}, headers=auth)
        problem = failures.check(f"POST /v1/agents flow={flow}", r, 422, "validation_error")
        if problem and not any(f.startswith(("flow", "body.flow")) for f in field_names(problem)):
            failures.add(f"flow={flow}: no flow field named in {problem.get('errors')}")
    failures.assert_none()

    r = await world.client.post("/v1/agents", json={**base, "flow": FLOW}, headers=auth)
    assert r.status_code == 201, r.text
    flow_agent = r.json()["id"]
    assert r.json()["prompt"] is None and r.json()["flow"]["start"] == "hello"

    # PATCH keeps "exactly one": adding a flow to a prompt agent needs the prompt cleared.
    r = await world.client.patch(f"/v1/agents/{team.agent_id}", json={"flow": FLOW}, headers=auth)
    failures.check("PATCH add flow, keep prompt", r, 422, "validation_error")
    r = await world.client.patch(f"/v1/agents/{flow_agent}", json={"flow": None}, headers=auth)
    failures.check("PATCH clear flow, no prompt", r, 422, "validation_error")
    r = await world.client.patch(f"/v1/agents/{flow_agent}", json={"flow": bad_flows[0]}, headers=auth)
    problem = failures.check("PATCH invalid flow", r, 422, "validation_error")
    if problem and not any(f.startswith(("flow", "body.flow")) for f in field_names(problem)):
        failures.add(f"PATCH invalid flow: no flow field named in {problem.get('errors')}")
    for field in ("name", "variables", "max_duration_s"):
        r = await world.client.patch(f"/v1/agents/{flow_agent}", json={field: None}, headers=auth)
        failures.check(f"PATCH {field}=null", r, 422, "validation_error")
    failures.assert_none()

    r = await world.client.patch(
        f"/v1/agents/{team.agent_id}", json={"prompt": None, "flow": FLOW}, headers=auth
    )
    assert r.status_code == 200, r.text
    assert r.json()["prompt"] is None and r.json()["flow"] is not None


async def test_publishable_key_errors_are_problems_too(world: World) -> None:
    team = await world.team("acme")
    key = await team.key(KeyType.PUBLISHABLE, allowed_origins=["https://a.example"])
    headers = {**team.auth(key), "Origin": "https://a.example", "content-type": "application/json"}
    r = await world.client.post("/v1/web-calls/token", content=b"{", headers=headers)
    assert problem_failure(r, 400, "malformed_json") is None, r.text
    assert r.headers["access-control-allow-origin"] == "https://a.example"
