"""/v1/carriers: SIP trunks and Twilio accounts; secrets sealed at rest and never returned; phone numbers
name their carrier; another team's carrier is 404."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from callgate.store.sealing import PREFIX
from tests.api.helpers import PROBLEM, assert_problem, field_names
from tests.support.world import World

SIP: dict[str, Any] = {
    "kind": "sip",
    "name": "Telnyx",
    "outbound": {
        "host": "sip.telnyx.example",
        "username": "acme",
        "password": "out-pass-1234",
        "from_domain": "acme.example",
    },
    "inbound": {
        "allowed_addresses": ["192.0.2.0/24", "198.51.100.7"],
        "username": "in",
        "password": "in-pw-99",
    },
}
TWILIO: dict[str, Any] = {
    "kind": "twilio",
    "name": "Twilio",
    "account_sid": "AC" + "0123456789abcdef" * 2,
    "auth_token": "twilio-token-abcdef",
}
SECRETS = ("out-pass-1234", "in-pw-99", "twilio-token-abcdef")


async def stored(world: World, carrier_id: str) -> dict[str, Any]:
    async with world.runtime.db.read() as s:
        row = (
            await s.execute(
                text("SELECT outbound_password, inbound_password, auth_token FROM carrier WHERE id = :i"),
                {"i": carrier_id},
            )
        ).one()
    return dict(row._mapping)


async def test_sip_carrier_lifecycle_keeps_its_secrets_sealed_and_unseen(world: World) -> None:
    team = await world.team("acme")
    r = await world.client.post("/v1/carriers", json=SIP, headers=team.auth())
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["kind"] == "sip" and body["id"].startswith("car_")
    assert body["outbound"] == {
        "host": "sip.telnyx.example",
        "port": 5060,
        "transport": "udp",
        "username": "acme",
        "from_domain": "acme.example",
        "password_set": True,
    }
    assert body["inbound"] == {
        "allowed_addresses": ["192.0.2.0/24", "198.51.100.7/32"],
        "username": "in",
        "password_set": True,
    }
    assert body["account_sid"] is None and body["auth_token_set"] is False
    columns = await stored(world, body["id"])
    assert columns["outbound_password"].startswith(PREFIX) and columns["inbound_password"].startswith(PREFIX)
    assert "out-pass-1234" not in str(columns) and "in-pw-99" not in str(columns)

    listed = await world.client.get("/v1/carriers", headers=team.auth())
    got = await world.client.get(f"/v1/carriers/{body['id']}", headers=team.auth())
    assert [c["id"] for c in listed.json()["data"]] == [body["id"]]
    assert got.json() == body
    for response in (r, listed, got):
        assert not any(secret in response.text for secret in SECRETS)

    # Replacing outbound without a password keeps the stored one; inbound: null drops it.
    r = await world.client.patch(
        f"/v1/carriers/{body['id']}",
        json={"outbound": {"host": "10.0.0.5", "port": 5080, "transport": "tcp"}, "inbound": None},
        headers=team.auth(),
    )
    assert r.status_code == 200, r.text
    changed = r.json()
    assert changed["outbound"]["host"] == "10.0.0.5" and changed["outbound"]["transport"] == "tcp"
    assert changed["outbound"]["password_set"] is True and changed["outbound"]["username"] is None
    assert changed["inbound"] is None
    columns = await stored(world, body["id"])
    assert columns["outbound_password"] is not None and columns["inbound_password"] is None

    r = await world.client.delete(f"/v1/carriers/{body['id']}", headers=team.auth())
    assert r.status_code == 204
    assert_problem(await world.client.get(f"/v1/carriers/{body['id']}", headers=team.auth()), 404)


async def test_twilio_carrier(world: World) -> None:
    team = await world.team("acme")
    r = await world.client.post("/v1/carriers", json=TWILIO, headers=team.auth())
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["account_sid"] == TWILIO["account_sid"] and body["auth_token_set"] is True
    assert body["outbound"] is None and body["inbound"] is None
    assert "twilio-token-abcdef" not in r.text
    assert (await stored(world, body["id"]))["auth_token"].startswith(PREFIX)
    r = await world.client.patch(
        f"/v1/carriers/{body['id']}", json={"auth_token": "rotated-token"}, headers=team.auth()
    )
    assert r.status_code == 200 and "rotated-token" not in r.text
    problem = assert_problem(
        await world.client.patch(
            f"/v1/carriers/{body['id']}", json={"outbound": {"host": "x.example"}}, headers=team.auth()
        ),
        422,
    )
    assert "body.outbound" in field_names(problem)


async def test_bad_carriers_are_422_problems(world: World) -> None:
    team = await world.team("acme")
    cases: list[dict[str, Any]] = [
        {"kind": "pstn", "name": "x"},
        {"kind": "sip", "name": "nothing configured"},
        {"kind": "sip", "name": "x", "inbound": {"allowed_addresses": ["not-a-network"]}},
        {"kind": "sip", "name": "x", "inbound": {"allowed_addresses": ["10.0.0.0/8"], "password": "p"}},
        {"kind": "sip", "name": "x", "outbound": {"host": "a.example", "transport": "tls"}},
        {"kind": "sip", "name": "x", "outbound": {"host": "a.example", "port": 70000}},
        {"kind": "sip", "name": "x", "outbound": {"host": "bad host;x"}},
        {"kind": "sip", "name": "x", "account_sid": TWILIO["account_sid"]},
        {**TWILIO, "account_sid": "nope"},
        {"kind": "twilio", "name": "no token", "account_sid": TWILIO["account_sid"]},
    ]
    for case in cases:
        r = await world.client.post("/v1/carriers", json=case, headers=team.auth())
        assert_problem(r, 422)
    assert (await world.client.get("/v1/carriers", headers=team.auth())).json()["data"] == []


async def test_another_teams_carrier_is_not_found(world: World) -> None:
    owner, intruder = await world.team("owner"), await world.team("intruder")
    carrier = (await world.client.post("/v1/carriers", json=SIP, headers=owner.auth())).json()["id"]
    path = f"/v1/carriers/{carrier}"
    assert_problem(await world.client.get(path, headers=intruder.auth()), 404, "not_found")
    assert_problem(await world.client.patch(path, json={"name": "mine"}, headers=intruder.auth()), 404)
    assert_problem(await world.client.delete(path, headers=intruder.auth()), 404)
    assert (await world.client.get("/v1/carriers", headers=intruder.auth())).json()["data"] == []
    # Nor can a number of the intruder's point at it.
    r = await world.client.post(
        "/v1/phone-numbers", json={"number": "+14155550199", "carrier_id": carrier}, headers=intruder.auth()
    )
    assert_problem(r, 404)
    assert (await world.client.get(path, headers=owner.auth())).json()["name"] == "Telnyx"


async def test_phone_numbers_name_their_carrier(world: World) -> None:
    team = await world.team("acme")
    carrier = (await world.client.post("/v1/carriers", json=SIP, headers=team.auth())).json()["id"]
    r = await world.client.post(
        "/v1/phone-numbers",
        json={"number": "+14155550123", "agent_id": team.agent_id, "carrier_id": carrier},
        headers=team.auth(),
    )
    assert r.status_code == 201, r.text
    number = r.json()
    assert number["carrier_id"] == carrier
    other = (await world.client.post("/v1/carriers", json=TWILIO, headers=team.auth())).json()["id"]
    r = await world.client.patch(
        f"/v1/phone-numbers/{number['id']}", json={"carrier_id": other}, headers=team.auth()
    )
    assert r.json()["carrier_id"] == other
    assert_problem(
        await world.client.patch(
            f"/v1/phone-numbers/{number['id']}", json={"carrier_id": "car_missing"}, headers=team.auth()
        ),
        404,
    )
    # Deleting the carrier leaves the number, without a carrier.
    assert (await world.client.delete(f"/v1/carriers/{other}", headers=team.auth())).status_code == 204
    r = await world.client.get(f"/v1/phone-numbers/{number['id']}", headers=team.auth())
    assert r.json()["carrier_id"] is None


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**40), max_value=2**40)
    | st.text(max_size=20)
    | st.sampled_from(["sip", "twilio", "udp", "tcp", "10.0.0.0/8", "::1", "fe80::1%eth0", "0.0.0.0/0"]),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)
sides = st.fixed_dictionaries(
    {},
    optional={
        "host": json_values,
        "port": json_values,
        "transport": json_values,
        "username": json_values,
        "password": json_values,
        "from_domain": json_values,
        "allowed_addresses": st.lists(json_values, max_size=3),
    },
)
bodies = st.fixed_dictionaries(
    {"kind": st.sampled_from(["sip", "twilio", "other"])},
    optional={
        "name": json_values,
        "outbound": sides | json_values,
        "inbound": sides | json_values,
        "account_sid": json_values,
        "auth_token": json_values,
    },
)


@settings(
    max_examples=120,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(body=bodies, patch=st.booleans())
async def test_no_carrier_body_gets_a_5xx(world: World, body: dict[str, Any], patch: bool) -> None:
    team = await world.team("fuzz")
    if patch:
        carrier = (await world.client.post("/v1/carriers", json=SIP, headers=team.auth())).json()["id"]
        body.pop("kind")
        r = await world.client.patch(f"/v1/carriers/{carrier}", json=body, headers=team.auth())
    else:
        r = await world.client.post("/v1/carriers", json=body, headers=team.auth())
    assert r.status_code < 500, f"{body!r}: {r.status_code} {r.text}"
    if r.status_code >= 400:
        assert r.headers["content-type"].startswith(PROBLEM)
    else:
        assert not any(secret in r.text for secret in SECRETS)
