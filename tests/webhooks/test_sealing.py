"""Webhook signing secrets are sealed at rest: the database never holds them in plain text."""

from __future__ import annotations

import asyncio

from sqlalchemy import text

from callgate.store import sealing
from callgate.webhooks import endpoints
from tests.support.receiver import Receiver
from tests.support.world import WorldFactory
from tests.webhooks.conftest import add_endpoint, new_call, run_call


async def _stored(world, table: str) -> list[tuple[str, str | None]]:  # type: ignore[no-untyped-def]
    async with world.runtime.db.read() as s:
        rows = await s.execute(text(f"SELECT secret, previous_secret FROM {table}"))
        return [(r[0], r[1]) for r in rows]


async def test_secrets_are_sealed_in_the_database_and_still_sign(
    world_with: WorldFactory, receiver: Receiver
) -> None:
    async with world_with() as world:
        team = await world.team("acme")
        endpoint = await add_endpoint(world, team, receiver.url, events=["call.created"])
        plain = endpoint["secret"]
        assert plain.startswith("whsec_")
        ((stored, previous),) = await _stored(world, "webhook_endpoint")
        assert stored.startswith(sealing.PREFIX) and plain not in stored and previous is None
        assert sealing.open_(stored) == plain

        r = await world.client.post(
            f"/v1/webhook-endpoints/{endpoint['id']}/rotate-secret",
            json={"overlap_s": 600},
            headers=team.auth(),
        )
        assert r.status_code == 200, r.text
        rotated = r.json()["secret"]
        ((stored, previous),) = await _stored(world, "webhook_endpoint")
        assert previous is not None and previous.startswith(sealing.PREFIX) and plain not in previous
        assert rotated not in stored and sealing.open_(stored) == rotated

        r = await world.client.post(
            "/v1/webhook-signing-secret/rotate", json={"overlap_s": 0}, headers=team.auth()
        )
        assert r.status_code == 200, r.text
        ((team_stored, _),) = await _stored(world, "webhook_signing_secret")
        assert team_stored.startswith(sealing.PREFIX) and r.json()["secret"] not in team_stored

        receiver.secrets = {"old": plain, "new": rotated}
        await new_call(world, team)
        (hit,) = await receiver.wait_for(1)
        assert sorted(hit.verified_by) == ["new", "old"]  # both signatures during the overlap


async def test_secrets_stored_in_plain_text_are_sealed_at_start(
    world_with: WorldFactory, receiver: Receiver
) -> None:
    async with world_with() as world:
        team = await world.team("acme")
        endpoint = await add_endpoint(world, team, receiver.url, events=["call.ended"])
        legacy = "whsec_" + "A" * 43 + "="

        async def store_plain(s):  # type: ignore[no-untyped-def]
            await s.execute(text("UPDATE webhook_endpoint SET secret = :v"), {"v": legacy})

        await world.runtime.db.write(store_plain)
        assert await _stored(world, "webhook_endpoint") == [(legacy, None)]
        # An older version's row is read as it is (and signs) ...
        receiver.secrets = {"legacy": legacy}
        call_id = await new_call(world, team)
        await run_call(world, team, call_id)
        (hit,) = await receiver.wait_for(1)
        assert hit.verified_by == ["legacy"]
        # ... and sealed at the next start.
        assert await world.runtime.db.write(endpoints.seal_stored_secrets) == 1
        ((stored, _),) = await _stored(world, "webhook_endpoint")
        assert stored.startswith(sealing.PREFIX) and sealing.open_(stored) == legacy
        assert await world.runtime.db.write(endpoints.seal_stored_secrets) == 0
        assert endpoint["id"]


def test_a_damaged_or_foreign_sealed_value_is_refused() -> None:
    sealing.install("test-secret-key-" + "x" * 32)
    sealed = sealing.seal("whsec_abc")
    assert sealing.open_(sealed) == "whsec_abc" and sealed != sealing.seal("whsec_abc")  # random nonce
    damaged = sealed[:-4] + ("AAAA" if not sealed.endswith("AAAA") else "BBBB")
    for bad in (damaged, sealing.PREFIX + "0123456789ab:" + sealed.rsplit(":", 1)[1]):
        try:
            sealing.open_(bad)
        except sealing.SealingError:
            continue
        raise AssertionError(f"{bad!r} was opened")


async def test_a_new_secret_key_reseals_with_the_previous_one_listed(world_with: WorldFactory) -> None:
    old_key, new_key = "old-secret-key-" + "o" * 32, "new-secret-key-" + "n" * 32
    async with world_with(secret_key=old_key, webhooks_dispatch=False) as world:
        team = await world.team("acme")
        plain = (await add_endpoint(world, team, "http://127.0.0.1:9/hook"))["secret"]
        ((before, _),) = await _stored(world, "webhook_endpoint")
    async with world_with(
        secret_key=new_key, previous_secret_keys=[old_key], webhooks_dispatch=False
    ) as world:
        ((after, _),) = await _stored(world, "webhook_endpoint")
        assert after != before and after.startswith(sealing.current_prefix())
        assert not before.startswith(sealing.current_prefix())
        assert sealing.open_(after) == plain
        r = await world.client.get("/v1/webhook-endpoints", headers=team.auth())
        assert r.status_code == 200 and "secret" not in r.json()["data"][0]  # never shown again


async def test_a_secret_sealed_under_a_lost_key_fails_deliveries_clearly_until_rotated(
    world_with: WorldFactory,
    receiver: Receiver,
) -> None:
    async with world_with(webhooks_dispatch=False) as world:
        team = await world.team("acme")
        endpoint = await add_endpoint(world, team, receiver.url, events=["call.created"])
        # As if sealed by a CALLGATE_SECRET_KEY this node does not have (changed, old one not listed).
        foreign = sealing.PREFIX + "0123456789ab:" + "A" * 104

        async def store_foreign(s):  # type: ignore[no-untyped-def]
            await s.execute(text("UPDATE webhook_endpoint SET secret = :v"), {"v": foreign})

        await world.runtime.db.write(store_foreign)
    async with world_with() as world:  # the node still starts, and serves
        await new_call(world, team)
        for _ in range(200):
            r = await world.client.get("/v1/webhook-deliveries", headers=team.auth())
            rows = r.json()["data"]
            if rows and rows[0]["last_error"]:
                break
            await asyncio.sleep(0.05)
        assert rows[0]["status"] != "succeeded" and "rotate it" in (rows[0]["last_error"] or ""), rows
        assert receiver.all() == []
        assert await _stored(world, "webhook_endpoint") == [(foreign, None)]  # left as it was
        rotate = f"/v1/webhook-endpoints/{endpoint['id']}/rotate-secret"
        r = await world.client.post(rotate, json={"overlap_s": 0}, headers=team.auth())
        assert r.status_code == 200, r.text
        receiver.secrets = {"new": r.json()["secret"]}
        await new_call(world, team)
        hits = await receiver.wait_for(1)
        assert hits[0].verified_by == ["new"]
