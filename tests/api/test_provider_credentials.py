"""/v1/provider-credentials: vendor keys sealed at rest, never returned, team-scoped; agents name them by
id in their engine settings (fallbacks included) and an unknown id is a 422."""

from __future__ import annotations

from sqlalchemy import text

from callgate.store.sealing import PREFIX
from tests.api.helpers import assert_problem, field_names
from tests.support.world import World

KEY = "dg-secret-0123456789abcdef"


async def test_credential_lifecycle_keeps_the_key_sealed_and_unseen(world: World) -> None:
    team, other = await world.team("acme"), await world.team("other")
    r = await world.client.post(
        "/v1/provider-credentials",
        json={"name": "Deepgram prod", "provider": "deepgram", "secret": KEY},
        headers=team.auth(),
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["id"].startswith("pcred_") and body["provider"] == "deepgram" and "secret" not in body
    async with world.runtime.db.read() as s:
        stored = (
            await s.execute(text("SELECT secret FROM provider_credential WHERE id = :i"), {"i": body["id"]})
        ).scalar_one()
    assert stored.startswith(PREFIX) and KEY not in stored

    listed = await world.client.get("/v1/provider-credentials", headers=team.auth())
    got = await world.client.get(f"/v1/provider-credentials/{body['id']}", headers=team.auth())
    assert [c["id"] for c in listed.json()["data"]] == [body["id"]] and got.json() == body
    for response in (r, listed, got):
        assert KEY not in response.text
    assert (await world.client.get("/v1/provider-credentials", headers=other.auth())).json()["data"] == []
    assert_problem(
        await world.client.get(f"/v1/provider-credentials/{body['id']}", headers=other.auth()), 404
    )
    r = await world.client.delete(f"/v1/provider-credentials/{body['id']}", headers=other.auth())
    assert_problem(r, 404)

    r = await world.client.delete(f"/v1/provider-credentials/{body['id']}", headers=team.auth())
    assert r.status_code == 204
    assert_problem(await world.client.get(f"/v1/provider-credentials/{body['id']}", headers=team.auth()), 404)


async def test_agents_name_credentials_of_their_own_team_only(world: World) -> None:
    team, other = await world.team("acme"), await world.team("other")
    created = await world.client.post(
        "/v1/provider-credentials",
        json={"name": "EL", "provider": "elevenlabs", "secret": "el-key"},
        headers=team.auth(),
    )
    mine = created.json()["id"]
    tts = {
        "engine": "elevenlabs",
        "voice_id": "voice1",
        "credential_id": mine,
        "fallback": [{"engine": "openai", "credential_id": mine}, {"engine": "espeak"}],
    }
    agent = {"name": "a", "prompt": "Be brief.", "language": "de-DE", "tts": tts}
    r = await world.client.post("/v1/agents", json=agent, headers=team.auth())
    assert r.status_code == 201, r.text
    assert r.json()["tts"] == tts and r.json()["language"] == "de-DE"

    problem = assert_problem(await world.client.post("/v1/agents", json=agent, headers=other.auth()), 422)
    assert "tts.credential_id" in field_names(problem)
    bad = {**agent, "tts": {**tts, "fallback": [{"engine": "polly"}]}}
    problem = assert_problem(await world.client.post("/v1/agents", json=bad, headers=team.auth()), 422)
    assert any(name.startswith("tts.fallback") for name in field_names(problem))
    bad = {**agent, "language": "not a language"}
    assert_problem(await world.client.post("/v1/agents", json=bad, headers=team.auth()), 422)
