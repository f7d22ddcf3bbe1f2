"""Flow states that call the agent's http tools: arguments from slots and variables, answer fields
stored, success and error branches, what is said while the request runs, barge-in, validation."""

from __future__ import annotations

import asyncio
from datetime import date
from typing import Any

import pytest

from callgate.errors import ValidationFailed
from callgate.flows import FlowAgent, validate_flow
from callgate.pipeline.interfaces import AgentData, AgentEvent, AgentText
from callgate.pipeline.tools import ToolDefinition, ToolHost, ToolOutcome
from tests.support.tool_host import ScriptedHost

SUNDAY = date(2026, 11, 22)
LOOKUP = ToolDefinition(
    kind="http",
    name="lookup_order",
    description="Look up an order.",
    parameters={
        "type": "object",
        "properties": {"order_id": {"type": "integer"}, "day": {"type": "string"}},
        "required": ["order_id"],
    },
    message="One moment while I check.",
)

FLOW: dict[str, Any] = {
    "start": "ask",
    "variables": {"shop": "Acme"},
    "slots": {
        "order_id": {"type": "number", "prompt": "What is your order number?"},
        "day": {"type": "date", "prompt": "Which day?"},
    },
    "states": {
        "ask": {"say": "Welcome to {{shop}}.", "collect": ["order_id", "day"], "next": "lookup"},
        "lookup": {
            "say": "Let me look that up.",
            "tool": {
                "name": "lookup_order",
                "arguments": {
                    "order_id": "{{order_id}}",
                    "day": "{{day}}",
                    "note": "{{shop}} order {{order_id}}",
                },
                "store": {"status": "status", "eta": "delivery.eta"},
            },
            "next": "found",
            "on_error": "failed",
        },
        "found": {"say": "Your order is {{status}} and arrives {{eta}}.", "end": True},
        "failed": {"say": "Sorry, I cannot find that order.", "end": True},
    },
}


def agent(host: ToolHost | None, flow: dict[str, Any] | None = None) -> FlowAgent:
    a = FlowAgent(validate_flow(flow or FLOW), today=lambda: SUNDAY, tools=[LOOKUP])
    if host is not None:
        a.bind(host)
    return a


async def events(stream: Any) -> list[AgentEvent]:
    return [event async for event in stream]


def texts(got: list[AgentEvent]) -> list[str]:
    return [e.text for e in got if isinstance(e, AgentText)]


async def test_answer_fields_are_stored_and_spoken_on_success() -> None:
    host = ScriptedHost(ToolOutcome(result={"status": "shipped", "delivery": {"eta": "Tuesday"}}))
    a = agent(host)
    await events(a.greet())
    got = await events(a.respond("order 42 for tomorrow"))
    # What comes before the request is a closed sentence (spoken while it runs), the rest after it.
    assert texts(got) == [
        "Let me look that up. One moment while I check. ",
        "Your order is shipped and arrives Tuesday.",
    ]
    # Slots go in as stored (a number stays a number, a date is ISO); text templates are filled.
    assert host.ran == [{"order_id": 42, "day": "2026-11-23", "note": "Acme order 42"}]
    data = [e.data for e in got if isinstance(e, AgentData)]
    assert data[-1] == {"order_id": 42, "day": "2026-11-23", "status": "shipped", "eta": "Tuesday"}
    assert [r.name for r in host.records] == ["lookup_order"] and host.records[0].outcome.ok
    assert a.finished


@pytest.mark.parametrize(
    "outcome",
    [
        ToolOutcome(error="the tool's server answered 404"),
        ToolOutcome(result={"status": "shipped"}),  # delivery.eta missing from the answer
    ],
)
async def test_a_failed_call_or_a_missing_field_takes_the_error_branch(outcome: ToolOutcome) -> None:
    host = ScriptedHost(outcome)
    a = agent(host)
    await events(a.greet())
    got = await events(a.respond("order 42 for tomorrow"))
    assert texts(got)[-1] == "Sorry, I cannot find that order."
    assert "status" not in a.data and len(host.records) == 1


async def test_arguments_off_the_schema_are_an_error_without_a_request() -> None:
    flow = {**FLOW, "states": {**FLOW["states"]}}
    flow["states"]["lookup"] = {
        **FLOW["states"]["lookup"],
        "tool": {**FLOW["states"]["lookup"]["tool"], "arguments": {"order_id": "number {{order_id}}"}},
    }
    host = ScriptedHost()
    a = agent(host, flow)
    await events(a.greet())
    got = await events(a.respond("order 42 for tomorrow"))
    assert texts(got)[-1] == "Sorry, I cannot find that order."
    assert host.ran == []  # never sent
    assert "do not match the tool's schema at order_id" in str(host.records[0].outcome.error)


async def test_without_a_tool_host_the_error_branch_is_taken() -> None:
    a = agent(None)
    await events(a.greet())
    got = await events(a.respond("order 42 for tomorrow"))
    assert texts(got)[-1] == "Sorry, I cannot find that order."


async def test_a_tool_state_at_the_start_runs_before_the_greeting_ends() -> None:
    flow = {
        "start": "who",
        "states": {
            "who": {
                "tool": {"name": "lookup_order", "arguments": {"order_id": 7}, "store": {"name": "customer"}},
                "next": "hello",
                "on_error": "hello",
            },
            "hello": {
                "say": "Hello {{name}}, how can I help?",
                "intents": [{"name": "bye", "keywords": ["bye"], "goto": "bye"}],
            },
            "bye": {"say": "Bye.", "end": True},
        },
    }
    host = ScriptedHost(ToolOutcome(result={"customer": "Ann"}))
    a = agent(host, flow)
    assert texts(await events(a.greet())) == ["One moment while I check. ", "Hello Ann, how can I help?"]
    assert host.ran == [{"order_id": 7}]


async def test_barge_in_keeps_the_request_and_applies_its_result_next_turn() -> None:
    host = ScriptedHost(ToolOutcome(result={"status": "shipped", "delivery": {"eta": "Tuesday"}}), delay=0.2)
    a = agent(host)
    await events(a.greet())
    stream = a.respond("order 42 for tomorrow")
    first = await anext(stream)
    assert isinstance(first, AgentData)
    assert await anext(stream) == AgentText("Let me look that up. One moment while I check. ")
    waiting = asyncio.ensure_future(anext(stream))
    await asyncio.sleep(0.05)
    waiting.cancel()  # the caller barges in while the request runs
    with pytest.raises(asyncio.CancelledError):
        await waiting
    await stream.aclose()
    a.on_interrupted("Let me look that up.")
    await asyncio.wait_for(host.recorded.wait(), 2)
    assert host.records[0].interrupted and host.records[0].outcome.ok  # it ran: its side effect stands
    # The caller's words ("hello?") do not count as a miss; the result is applied and spoken.
    got = await events(a.respond("hello?"))
    assert texts(got) == ["Your order is shipped and arrives Tuesday."]
    assert a.data["status"] == "shipped" and len(host.ran) == 1


def test_tool_states_are_validated() -> None:
    def problems(flow: dict[str, Any], tools: dict[str, str] | None = None) -> list[str]:
        with pytest.raises(ValidationFailed) as info:
            validate_flow(flow, tools=tools)
        return [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in info.value.errors]

    lookup = FLOW["states"]["lookup"]
    unknown = problems(FLOW, {"other": "http", "transfer_call": "transfer_call"})
    assert unknown == ["flow.states.lookup.tool.name: 'lookup_order' is not one of the agent's tools"]
    wrong_kind = problems(FLOW, {"lookup_order": "client"})
    assert wrong_kind == ["flow.states.lookup.tool.name: 'lookup_order' is not an http tool"]
    validate_flow(FLOW, tools={"lookup_order": "http"})

    def with_lookup(**changes: Any) -> dict[str, Any]:
        return {**FLOW, "states": {**FLOW["states"], "lookup": {**lookup, **changes}}}

    assert "needs `next` (on success) and `on_error`" in problems(with_lookup(on_error=None))[0]
    assert "cannot have intents, collect" in problems(with_lookup(end=True))[0]
    assert "not a dotted path" in problems(with_lookup(tool={**lookup["tool"], "store": {"x": "a..b"}}))[0]
    assert (
        "unknown placeholder {{nope}}"
        in problems(with_lookup(tool={**lookup["tool"], "arguments": {"order_id": "{{nope}}"}}))[0]
    )
    assert (
        "under a variable's or slot's name"
        in problems(with_lookup(tool={**lookup["tool"], "store": {"day": "eta"}}))[0]
    )
    # A retry loop through on_error with no caller turn between would spin: refused.
    loop = with_lookup(on_error="lookup")
    assert "go to each other with no caller turn" in problems(loop)[0]
    orphan = {**FLOW, "states": {**FLOW["states"], "found": {"say": "x", "end": True, "on_error": "failed"}}}
    assert "`on_error` needs a `tool`" in problems(orphan)[0]


async def test_a_turn_that_started_a_request_cannot_be_taken_back() -> None:
    host = ScriptedHost(ToolOutcome(result={"status": "shipped", "delivery": {"eta": "Tuesday"}}))
    a = agent(host)
    await events(a.greet())
    await events(a.respond("order 42"))
    assert a.take_back()  # only a slot was filled
    await events(a.respond("order 42"))
    got = await events(a.respond("tomorrow"))
    assert "Your order is shipped and arrives Tuesday." in texts(got)
    assert not a.take_back() and len(host.ran) == 1  # the request ran: it stands
