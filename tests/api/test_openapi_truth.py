"""The OpenAPI document tells the truth (issue 11, defect 10): every operation declares the errors it can
answer, in the media type and body shape that are really sent (problem+json natively, the vendor's own shape
under a dialect); inputs of the wrong JSON type are refused instead of coerced; a 405 says what is allowed."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator

from callgate.auth.keys import KeyType
from tests.api.helpers import PROBLEM, assert_problem, field_names
from tests.support.world import PROMPT_AGENT, World

KEYED_STATUSES = {"401", "403", "429"}


async def openapi(world: World) -> dict[str, Any]:
    r = await world.client.get("/openapi.json")
    assert r.status_code == 200
    spec: dict[str, Any] = r.json()
    return spec


def operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, op)
        for path, item in spec["paths"].items()
        for method, op in item.items()
        if isinstance(op, dict) and "responses" in op
    ]


def assert_declared(spec: dict[str, Any], path: str, method: str, response: httpx.Response) -> None:
    """``response`` has a status, media type and body that ``method path`` declares."""
    responses = spec["paths"][path][method]["responses"]
    code = str(response.status_code)
    assert code in responses, f"{method.upper()} {path} does not declare {code}: {response.text}"
    media = response.headers["content-type"].split(";")[0]
    content = responses[code]["content"]
    assert media in content, f"{method.upper()} {path} {code}: {media} not in {list(content)}"
    root = {"components": spec["components"], **content[media]["schema"]}
    Draft202012Validator(root).validate(response.json())


async def test_every_operation_declares_its_errors_in_the_shape_sent(world: World) -> None:
    spec = await openapi(world)
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    wrong: list[str] = []
    for path, method, op in operations(spec):
        errors = {code: r for code, r in op["responses"].items() if code[0] in "45"}
        if path == "/healthz":
            continue
        if path != "/readyz" and not set(errors) >= KEYED_STATUSES:
            wrong.append(f"{method} {path}: only {sorted(errors)}")
        for code, response in errors.items():
            content = response.get("content", {})
            if path.startswith("/dialects/"):
                ok = (
                    list(content) == ["application/json"]
                    and "$ref" not in content["application/json"]["schema"]
                )
            else:
                ok = content == {PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}}
            if not ok:
                wrong.append(f"{method} {path} {code}: {content}")
    assert not wrong, wrong


async def test_real_error_answers_match_the_declared_responses(world: World) -> None:
    spec = await openapi(world)
    team = await world.team("acme")
    publishable = await team.key(KeyType.PUBLISHABLE, allowed_origins=["https://shop.example"])
    client = world.client
    cases: list[tuple[str, str, httpx.Response]] = [
        ("/v1/agents", "get", await client.get("/v1/agents")),
        ("/v1/agents", "get", await client.get("/v1/agents", headers=team.auth(publishable))),
        ("/v1/agents", "post", await client.post("/v1/agents", json={"name": 5}, headers=team.auth())),
        ("/v1/agents", "post", await client.post("/v1/agents", content=b"{", headers=team.auth())),
        ("/v1/agents/{agent_id}", "get", await client.get("/v1/agents/agt_x", headers=team.auth())),
        ("/v1/calls", "get", await client.get("/v1/calls", params={"cursor": "!"}, headers=team.auth())),
        (
            "/dialects/vocode/v1/calls/list",
            "get",
            await client.get("/dialects/vocode/v1/calls/list", params={"page": 0}, headers=team.auth()),
        ),
        ("/dialects/vocode/v1/calls/list", "get", await client.get("/dialects/vocode/v1/calls/list")),
        (
            "/dialects/voxworks/api/v1/create-web-call",
            "post",
            await client.post("/dialects/voxworks/api/v1/create-web-call", json={}, headers=team.auth()),
        ),
        (
            "/dialects/voicehub/calls/public/create-web-call",
            "post",
            await client.post("/dialects/voicehub/calls/public/create-web-call", json={"type": "WebAudio"}),
        ),
        (
            "/dialects/verbex/v1/calls/public/create-web-call",
            "get",
            await client.get(
                "/dialects/verbex/v1/calls/public/create-web-call",
                params={"ai_agent_id": team.agent_id, "shared_key": "cg_sh_nope"},
            ),
        ),
        (
            "/dialects/oneinbox/v1/calls/{call_id}",
            "get",
            await client.get("/dialects/oneinbox/v1/calls/call_nope", headers=team.auth()),
        ),
    ]
    for path, method, response in cases:
        assert response.status_code >= 400, (path, response.text)
        assert_declared(spec, path, method, response)


@pytest.mark.parametrize("overlap", [False, True, "60", 60.0, None])
async def test_overlap_of_the_wrong_type_is_422_and_rotates_nothing(world: World, overlap: object) -> None:
    team = await world.team("acme")
    before = (await world.client.get("/v1/webhook-signing-secret", headers=team.auth())).json()
    r = await world.client.post(
        "/v1/webhook-signing-secret/rotate", json={"overlap_s": overlap}, headers=team.auth()
    )
    assert "body.overlap_s" in field_names(assert_problem(r, 422, "validation_error"))
    after = (await world.client.get("/v1/webhook-signing-secret", headers=team.auth())).json()
    assert after == before


async def test_numbers_and_booleans_are_not_coerced(world: World) -> None:
    team = await world.team("acme")
    agent = f"/v1/agents/{team.agent_id}"
    cases: list[tuple[str, str, dict[str, Any], str]] = [
        (
            "POST",
            "/v1/webhook-replays",
            {"created_after": "2030-01-01T00:00:00Z", "created_before": 1},
            "created_before",
        ),
        (
            "POST",
            "/v1/webhook-replays",
            {"created_after": 0, "created_before": "2030-01-01T00:00:00Z"},
            "created_after",
        ),
        ("PATCH", agent, {"max_duration_s": True}, "max_duration_s"),
        ("PATCH", agent, {"silence_timeout_s": "30"}, "silence_timeout_s"),
        ("PATCH", agent, {"turn_detection": {"vad_threshold": True}}, "turn_detection.vad_threshold"),
        (
            "PATCH",
            agent,
            {"turn_detection": {"allow_interruptions": 1}},
            "turn_detection.allow_interruptions",
        ),
        ("PATCH", agent, {"turn_detection": {"min_speech_ms": 100.0}}, "turn_detection.min_speech_ms"),
        ("POST", "/v1/webhook-endpoints", {"url": "https://93.184.215.14/h", "enabled": "yes"}, "enabled"),
        ("POST", "/v1/webhook-endpoints", {"url": "https://93.184.215.14/h", "enabled": 0}, "enabled"),
    ]
    for method, path, body, field in cases:
        r = await world.client.request(method, path, json=body, headers=team.auth())
        problem = assert_problem(r, 422, "validation_error")
        assert f"body.{field}" in field_names(problem), (path, body, problem)
    unchanged = (await world.client.get(agent, headers=team.auth())).json()
    assert (unchanged["max_duration_s"], unchanged["turn_detection"]) == (600, {})
    endpoints = (await world.client.get("/v1/webhook-endpoints", headers=team.auth())).json()["data"]
    assert endpoints == []


@pytest.mark.parametrize("llm", [{"": {}}, {"model": "llama3.2"}])
async def test_llm_settings_without_an_engine_are_422_not_503(world: World, llm: dict[str, Any]) -> None:
    team = await world.team("acme")
    r = await world.client.post("/v1/agents", json={**PROMPT_AGENT, "llm": llm}, headers=team.auth())
    assert "llm.engine" in field_names(assert_problem(r, 422, "validation_error"))
    r = await world.client.patch(f"/v1/agents/{team.agent_id}", json={"llm": llm}, headers=team.auth())
    assert "llm.engine" in field_names(assert_problem(r, 422, "validation_error"))


async def test_engine_settings_that_are_not_objects_are_422(world: World) -> None:
    team = await world.team("acme")
    r = await world.client.post(
        "/v1/agents", json={**PROMPT_AGENT, "stt": {"vad": 5, "engine": "whisper"}}, headers=team.auth()
    )
    assert r.status_code == 422, r.text


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("DELETE", "/v1/calls", {"GET"}),
        ("PUT", "/v1/agents", {"GET", "POST"}),
        ("POST", "/v1/agents/agt_x", {"GET", "PATCH", "DELETE"}),
        ("GET", "/dialects/vocode/v1/calls/create", {"POST"}),
        ("PUT", "/dialects/voxworks/api/v1/create-web-call", {"POST"}),
        ("OPTIONS", "/dialects/oneinbox/v1/calls/web", {"POST"}),  # not /calls/{call_id}'s GET
    ],
)
async def test_405_lists_the_allowed_methods(world: World, method: str, path: str, allowed: set[str]) -> None:
    r = await world.client.request(method, path)
    assert r.status_code == 405, r.text
    assert {m.strip() for m in r.headers["allow"].split(",")} == allowed
    if not path.startswith("/dialects/"):
        assert_problem(r, 405, "method_not_allowed")
