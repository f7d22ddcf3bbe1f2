"""Post-call analysis → ``call.analyzed``: flows from their slots, prompt agents from a real HTTP LLM."""

from __future__ import annotations

import json
from typing import Any

from callgate.domain.lifecycle import EndReason
from callgate.flows.demo import DEMO_FLOW
from tests.support.fake_openai import (  # noqa: F401 - fixtures
    FakeOpenAI,
    fake_openai,
    openai_server,
    text_events,
    tool_events,
)
from tests.support.fake_openai import Reply as LLMReply
from tests.support.receiver import Receiver
from tests.support.world import Team, World
from tests.webhooks.conftest import add_endpoint, new_call, run_call

PLAN = {
    "data_schema": {
        "type": "object",
        "properties": {
            "intent": {"type": "string", "enum": ["order_status", "complaint", "other"]},
            "order_number": {"type": ["string", "null"]},
            "follow_up": {"type": "boolean"},
        },
        "required": ["intent", "follow_up"],
    },
    "instructions": "The company is {{company}}.",
}


async def _analyzed(world: World, team: Team, receiver: Receiver, call_id: str) -> dict[str, Any]:
    (hit,) = await receiver.wait_for(1, timeout=20)
    assert hit.payload["type"] == "call.analyzed" and hit.verified_by == ["endpoint"]
    view = (await world.client.get(f"/v1/calls/{call_id}", headers=team.auth())).json()
    assert hit.payload["data"] == view
    analysis: dict[str, Any] = view["analysis"]
    return analysis


async def test_a_flow_call_is_summarised_from_its_slots(world: World, receiver: Receiver) -> None:
    team = await world.team("clinic")
    r = await world.client.post(
        "/v1/agents", json={"name": "Reception", "flow": DEMO_FLOW}, headers=team.auth()
    )
    agent_id = r.json()["id"]
    endpoint = await add_endpoint(world, team, receiver.url, events=["call.analyzed"])
    receiver.secrets = {"endpoint": endpoint["secret"]}
    call_id = await new_call(world, team, agent_id)
    slots = {"day": "2026-03-05", "time": "15:00", "appointment_booked": True}
    await run_call(world, team, call_id, reason=EndReason.AGENT_ENDED, data=slots)

    analysis = await _analyzed(world, team, receiver, call_id)
    assert analysis["status"] == "completed" and analysis["source"] == "flow"
    assert analysis["data"] == slots and analysis["outcome"] == "completed"
    assert "day: 2026-03-05" in analysis["summary"] and "time: 15:00" in analysis["summary"]
    assert "appointment booked: True" in analysis["summary"]
    assert analysis["analyzed_at"].endswith("Z")


async def test_a_call_that_never_started_is_not_analysed(world: World, receiver: Receiver) -> None:
    team = await world.team("clinic")
    await add_endpoint(world, team, receiver.url, events=["call.analyzed", "call.ended"])
    call_id = await new_call(world, team)
    await world.client.post(f"/v1/calls/{call_id}/end", headers=team.auth())
    (hit,) = await receiver.wait_for(1)
    assert hit.payload["type"] == "call.ended"
    view = (await world.client.get(f"/v1/calls/{call_id}", headers=team.auth())).json()
    assert view["analysis"] is None


async def _prompt_agent(world: World, team: Team, fake: FakeOpenAI) -> str:
    llm = {"engine": "openai", "base_url": fake.base_url, "model": "fake-model"}
    r = await world.client.post(
        "/v1/agents",
        json={
            "name": "support",
            "prompt": "You help customers of {{company}}.",
            "variables": {"company": "Acme"},
            "llm": llm,
        },
        headers=team.auth(),
    )
    assert r.status_code == 201, r.text
    agent_id: str = r.json()["id"]
    r = await world.client.put(f"/v1/agents/{agent_id}/analysis-plan", json=PLAN, headers=team.auth())
    assert r.status_code == 200, r.text
    assert r.json()["data_schema"] == PLAN["data_schema"]
    return agent_id


async def test_a_prompt_call_is_analysed_by_the_llm_with_the_agent_s_schema(
    world: World,
    receiver: Receiver,
    fake_openai: FakeOpenAI,  # noqa: F811
) -> None:
    team = await world.team("acme")
    agent_id = await _prompt_agent(world, team, fake_openai)
    endpoint = await add_endpoint(world, team, receiver.url, events=["call.analyzed"])
    receiver.secrets = {"endpoint": endpoint["secret"]}
    extracted = {"intent": "order_status", "order_number": "A-1234", "follow_up": False}
    answer = {"summary": "The caller asked where order A-1234 is.", "data": extracted}
    fake_openai.replies.append(LLMReply(events=tool_events("record_analysis", json.dumps(answer))))
    call_id = await new_call(world, team, agent_id)
    turns = (
        ("agent", "Hi, Acme support."),
        ("user", "Where is my order A-1234?"),
        ("agent", "It ships today."),
    )
    await run_call(world, team, call_id, turns=turns, reason=EndReason.CALLER_HANGUP)

    analysis = await _analyzed(world, team, receiver, call_id)
    assert analysis["status"] == "completed" and analysis["source"] == "llm"
    assert analysis["summary"] == answer["summary"] and analysis["data"] == extracted
    assert analysis["outcome"] == "caller_hung_up"
    (request,) = fake_openai.requests
    tool = request["tools"][0]["function"]
    assert tool["name"] == "record_analysis"
    assert tool["parameters"]["properties"]["data"] == PLAN["data_schema"]
    system, user = request["messages"]
    assert "The company is Acme." in system["content"]
    assert (
        "Caller: Where is my order A-1234?" in user["content"]
        and "You help customers of Acme." in user["content"]
    )


async def test_an_llm_answer_outside_the_schema_is_retried_then_stored_as_failed(
    world: World,
    receiver: Receiver,
    fake_openai: FakeOpenAI,  # noqa: F811
) -> None:
    team = await world.team("acme")
    agent_id = await _prompt_agent(world, team, fake_openai)
    await add_endpoint(world, team, receiver.url, events=["call.analyzed"])
    wrong = {"summary": "ok", "data": {"intent": "lost_parcel", "follow_up": "yes"}}
    fake_openai.replies.extend(
        [
            LLMReply(events=tool_events("record_analysis", json.dumps(wrong))),
            LLMReply(events=text_events("I think the caller was happy.")),  # neither a tool call nor JSON
            LLMReply(status=500, error="model crashed"),
        ]
    )
    call_id = await new_call(world, team, agent_id)
    await run_call(world, team, call_id)
    (hit,) = await receiver.wait_for(1, timeout=30)
    analysis = hit.payload["data"]["analysis"]
    assert analysis["status"] == "failed" and analysis["summary"] is None
    assert "500" in analysis["error"] and len(fake_openai.requests) == 3


async def test_the_next_attempt_succeeds_after_a_bad_answer(
    world: World,
    receiver: Receiver,
    fake_openai: FakeOpenAI,  # noqa: F811
) -> None:
    team = await world.team("acme")
    agent_id = await _prompt_agent(world, team, fake_openai)
    await add_endpoint(world, team, receiver.url, events=["call.analyzed"])
    good = {"summary": "A complaint.", "data": {"intent": "complaint", "follow_up": True}}
    fake_openai.replies.extend(
        [
            LLMReply(
                events=tool_events(
                    "record_analysis", json.dumps({"summary": "x", "data": {"intent": "other"}})
                )
            ),
            LLMReply(
                events=text_events("```json\n" + json.dumps(good) + "\n```")
            ),  # JSON as text is accepted
        ]
    )
    call_id = await new_call(world, team, agent_id)
    await run_call(world, team, call_id)
    (hit,) = await receiver.wait_for(1, timeout=30)
    assert hit.payload["data"]["analysis"]["data"] == good["data"]
    assert len(fake_openai.requests) == 2


async def test_slow_analyses_run_side_by_side(
    world: World,
    receiver: Receiver,
    fake_openai: FakeOpenAI,  # noqa: F811
) -> None:
    team = await world.team("acme")
    agent_id = await _prompt_agent(world, team, fake_openai)
    await add_endpoint(world, team, receiver.url, events=["call.analyzed"])
    answer = {"summary": "A question.", "data": {"intent": "other", "follow_up": False}}
    fake_openai.replies.extend(
        LLMReply(events=tool_events("record_analysis", json.dumps(answer)), delay=0.5) for _ in range(3)
    )
    call_ids = [await new_call(world, team, agent_id) for _ in range(3)]
    for call_id in call_ids:
        await run_call(world, team, call_id)
    hits = await receiver.wait_for(3, timeout=30)
    assert sorted(h.payload["data"]["id"] for h in hits) == sorted(call_ids)
    assert all(h.payload["data"]["analysis"]["summary"] == "A question." for h in hits)
    assert fake_openai.max_in_flight >= 2  # one slow LLM answer did not hold up the others
