"""Paging and numeric query parameters are bounded on every API: a value the database cannot take is a
4xx in the API's own error shape, never a 500 (issue 11, defect 4)."""

from __future__ import annotations

import base64
import json

import pytest

from tests.api.helpers import assert_problem, field_names
from tests.support.world import World

HUGE = "999999999999999999"
NATIVE_LISTS = (
    "/v1/agents",
    "/v1/calls",
    "/v1/contacts",
    "/v1/phone-numbers",
    "/v1/webhook-endpoints",
    "/v1/webhook-deliveries",
)


@pytest.mark.parametrize("page", [HUGE, "9" * 40, "1000001", "0", "-1"])
async def test_vocode_page_out_of_range_is_422_in_fastapi_shape(world: World, page: str) -> None:
    team = await world.team("acme")
    r = await world.client.get(
        "/dialects/vocode/v1/calls/list", params={"page": page, "size": 100}, headers=team.auth()
    )
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/json"
    assert [e["loc"] for e in r.json()["detail"]] == [["query", "page"]]


async def test_vocode_last_allowed_page_is_an_empty_page(world: World) -> None:
    team = await world.team("acme")
    r = await world.client.get(
        "/dialects/vocode/v1/calls/list", params={"page": 1_000_000, "size": 100}, headers=team.auth()
    )
    assert r.status_code == 200, r.text
    assert r.json()["items"] == [] and r.json()["has_more"] is False


async def test_native_limits_and_cursors_are_bounded(world: World) -> None:
    team = await world.team("acme")
    bad: list[str] = []
    for path in NATIVE_LISTS:
        for params, field in (
            ({"limit": HUGE}, "query.limit"),
            ({"limit": "9" * 40}, "query.limit"),
            ({"cursor": "A" * 513}, "query.cursor"),
        ):
            r = await world.client.get(path, params=params, headers=team.auth())
            if r.status_code != 422:
                bad.append(f"{path} {params}: {r.status_code}")
                continue
            if field not in field_names(assert_problem(r, 422, "validation_error")):
                bad.append(f"{path} {params}: {field} not named")
    assert not bad, bad


@pytest.mark.parametrize(
    "moment", ["9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59.999999Z"]
)
async def test_extreme_times_in_filters_are_not_500(world: World, moment: str) -> None:
    team = await world.team("acme")
    for path in ("/v1/calls", "/v1/webhook-deliveries"):
        for name in ("created_after", "created_before"):
            r = await world.client.get(path, params={name: moment}, headers=team.auth())
            assert r.status_code < 500, (path, name, r.text)
            if r.status_code != 200:
                assert_problem(r, r.status_code)


async def test_forged_cursor_with_a_time_outside_utc_is_400(world: World) -> None:
    team = await world.team("acme")
    raw = json.dumps(["9999-12-31T23:59:59-14:00", "x"]).encode()
    cursor = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    for path in NATIVE_LISTS:
        r = await world.client.get(path, params={"cursor": cursor}, headers=team.auth())
        assert_problem(r, 400, "bad_request")
