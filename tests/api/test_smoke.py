from tests.support.world import World


async def test_create_agent_and_web_call(world: World) -> None:
    team = await world.team("acme")
    r = await world.client.post("/v1/web-calls", json={"agent_id": team.agent_id}, headers=team.auth())
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["status"] == "created"
    assert body["websocket_url"].startswith("ws://testserver/v1/calls/")
    r = await world.client.get(f"/v1/calls/{body['id']}", headers=team.auth())
    assert r.status_code == 200, r.text
    assert r.json()["transcript"] == []
