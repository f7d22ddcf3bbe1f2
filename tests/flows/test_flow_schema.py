"""Flow definitions are checked before an agent is saved."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from callgate.errors import ValidationFailed
from callgate.flows import Flow, validate_flow
from callgate.flows.demo import DEMO_FLOW, demo_flow


def minimal() -> dict[str, Any]:
    return {
        "start": "hello",
        "intents": [{"name": "bye", "keywords": ["bye"], "goto": "bye"}],
        "states": {"hello": {"say": "Hi {{name}}."}, "bye": {"say": "Bye.", "end": True}},
        "variables": {"name": "there"},
    }


def messages(data: dict[str, Any], **kwargs: Any) -> str:
    with pytest.raises(ValidationFailed) as info:
        validate_flow(data, **kwargs)
    assert info.value.status == 422 and info.value.errors
    assert all(e["loc"][0] == "flow" for e in info.value.errors)
    return " | ".join(e["msg"] for e in info.value.errors)


def test_demo_and_minimal_flows_are_valid() -> None:
    assert isinstance(demo_flow(), Flow)
    assert validate_flow(minimal()).start == "hello"


def test_unknown_start_state() -> None:
    data = minimal() | {"start": "nowhere"}
    assert "start state 'nowhere' does not exist" in messages(data)


def test_unknown_transition_target() -> None:
    data = minimal()
    data["intents"][0]["goto"] = "gone"
    assert "goes to unknown state 'gone'" in messages(data)
    data = minimal()
    data["states"]["hello"]["next"] = "later"
    data["states"]["hello"]["collect"] = ["x"]
    text = messages(data)
    assert "unknown state 'later'" in text and "unknown slot 'x'" in text


def test_unreachable_state() -> None:
    data = minimal()
    data["states"]["orphan"] = {"say": "Nobody comes here.", "end": True}
    assert "not reachable" in messages(data) and "orphan" in messages(data)


def test_extra_fields_are_refused() -> None:
    data = minimal()
    data["states"]["hello"]["sayy"] = "typo"
    assert "Extra inputs are not permitted" in messages(data)


def test_state_shapes() -> None:
    data = minimal()
    data["states"]["bye"]["transfer"] = "+1555"
    assert "both end the call and transfer" in messages(data)
    data = minimal()
    data["states"]["hello"]["collect"] = []
    data["states"]["hello"]["next"] = "hello"  # a state that moves on to itself, forever
    assert "no caller turn between them" in messages(data)
    data = minimal()
    data["intents"] = []
    data["states"]["hello"]["intents"] = [{"name": "x", "goto": "bye"}]
    assert "needs keywords or an answer" in messages(data)


def test_waiting_state_needs_something_to_match() -> None:
    data = minimal()
    data["intents"] = []
    data["states"]["hello"]["next"] = None
    data["states"]["bye"] = {"say": "Bye.", "end": True}
    assert "has no intents or slots" in messages(data)


def test_placeholders_must_be_known() -> None:
    data = minimal()
    data["states"]["hello"]["say"] = "Hi {{customer_name}}."
    assert "unknown placeholder {{customer_name}}" in messages(data)
    assert validate_flow(data, known_variables=["customer_name"])


def test_type_errors_are_located() -> None:
    data = copy.deepcopy(DEMO_FLOW)
    data["slots"]["day"]["type"] = "weekday"
    with pytest.raises(ValidationFailed) as info:
        validate_flow(data)
    assert info.value.errors is not None
    assert info.value.errors[0]["loc"] == ["flow", "slots", "day", "type"]
