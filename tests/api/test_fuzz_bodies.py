"""Property: whatever JSON (or bytes) a client sends to any POST/PATCH route, the answer is below 500,
and every refusal is a problem document."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from callgate.api.schemas.agents import AgentCreate, AgentUpdate
from callgate.api.schemas.calls import CallEnd, WebCallCreate, WebCallTokenCreate
from callgate.api.schemas.contacts import ContactCreate, ContactUpdate, PhoneNumberCreate, PhoneNumberUpdate
from tests.api.helpers import PROBLEM
from tests.support.world import World

ROUTES: list[tuple[str, str, list[str], dict[str, Any]]] = [
    ("POST", "/v1/agents", list(AgentCreate.model_fields), {"name": "a", "prompt": "p"}),
    ("PATCH", "/v1/agents/{agent}", list(AgentUpdate.model_fields), {}),
    ("POST", "/v1/web-calls", list(WebCallCreate.model_fields), {"agent_id": "{agent}"}),
    ("POST", "/v1/web-calls/token", list(WebCallTokenCreate.model_fields), {"agent_id": "{agent}"}),
    ("POST", "/v1/calls/{call}/end", list(CallEnd.model_fields), {}),
    ("POST", "/v1/contacts", list(ContactCreate.model_fields), {}),
    ("PATCH", "/v1/contacts/{contact}", list(ContactUpdate.model_fields), {}),
    ("POST", "/v1/phone-numbers", list(PhoneNumberCreate.model_fields), {"number": "{number}"}),
    ("PATCH", "/v1/phone-numbers/{phone}", list(PhoneNumberUpdate.model_fields), {}),
]

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
    | st.sampled_from(["", "websocket", "sip", "audio_text", "+14155550123", "https://x.example", "a@b.co"])
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=10,
)


# A case: a route, and either changes over its valid body (most cases), any JSON value, or raw bytes.
Case = tuple[int, str, Any]
cases: st.SearchStrategy[Case] = st.integers(0, len(ROUTES) - 1).flatmap(
    lambda i: st.one_of(
        st.tuples(
            st.just(i),
            st.just("changes"),
            st.fixed_dictionaries({}, optional={name: json_values for name in [*ROUTES[i][2], "surprise"]}),
        ),
        st.tuples(
            st.just(i), st.just("changes"), st.fixed_dictionaries({}, optional={ROUTES[i][2][0]: scalars})
        ),
        st.tuples(st.just(i), st.just("json"), json_values),
        st.tuples(st.just(i), st.just("bytes"), st.binary(max_size=60)),
    )
)

_numbers = itertools.count(4930000000)


@pytest.fixture
async def ids(world: World) -> dict[str, str]:
    team = await world.team("acme")
    auth = team.auth()
    contact = (await world.client.post("/v1/contacts", json={}, headers=auth)).json()["id"]
    phone = (
        await world.client.post("/v1/phone-numbers", json={"number": "+4930999999"}, headers=auth)
    ).json()
    call = (await world.client.post("/v1/web-calls", json={"agent_id": team.agent_id}, headers=auth)).json()
    return {
        "agent": team.agent_id,
        "contact": contact,
        "phone": phone["id"],
        "call": call["id"],
        "key": team.secret,
    }


@settings(
    max_examples=450,  # ~50 per route
    deadline=None,
    derandomize=True,  # the same examples on every run: a failure here is always reproducible
    database=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
)
@given(case=cases)
async def test_no_body_gets_a_5xx(world: World, ids: dict[str, str], case: Case) -> None:
    index, kind, value = case
    method, path, _, valid = ROUTES[index]
    auth = {"Authorization": f"Bearer {ids['key']}"}
    url = path.format(**ids)
    if kind == "bytes":
        r = await world.client.request(
            method, url, content=value, headers={**auth, "content-type": "application/json"}
        )
    else:
        base = {k: v.format(**ids, number=f"+{next(_numbers)}") for k, v in valid.items()}
        body = {**base, **value} if kind == "changes" else value
        r = await world.client.request(method, url, json=body, headers=auth)
    assert r.status_code < 500, f"{method} {path} {value!r}: {r.status_code} {r.text}"
    if r.status_code >= 400:
        assert r.headers["content-type"].startswith(PROBLEM), r.headers
