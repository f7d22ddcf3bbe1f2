"""RTVI parsing: every unacceptable client message is a ProtocolError, before any work proportional to it."""

from __future__ import annotations

import json

import pytest

from callgate.realtime import rtvi

DEEP = '{"label":"rtvi-ai","type":"x","data":' + "[" * 5000 + "]" * 5000 + "}"


def wrapped(data: str) -> str:
    return '{"label":"rtvi-ai","type":"send-text","data":' + data + "}"


def test_parses_a_message() -> None:
    msg = rtvi.parse(json.dumps({"label": "rtvi-ai", "type": "client-ready", "id": 7, "data": {"a": [1]}}))
    assert msg == rtvi.ClientMessage(type="client-ready", id="7", data={"a": [1]})


def test_deep_nesting_is_a_protocol_error() -> None:
    with pytest.raises(rtvi.ProtocolError, match="nested deeper than 32 levels"):
        rtvi.parse(DEEP)


def test_nesting_up_to_the_limit_is_accepted() -> None:
    inner = "[" * (rtvi.MAX_DEPTH - 2) + "]" * (rtvi.MAX_DEPTH - 2)
    assert rtvi.parse(wrapped('{"x":' + inner + "}")).data == {"x": json.loads(inner)}
    with pytest.raises(rtvi.ProtocolError, match="nested"):
        rtvi.parse(wrapped('{"x":[' + inner + "]}"))


@pytest.mark.parametrize(
    "text",
    [
        '"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["',  # brackets in a string do not nest
        '"\\"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["',  # nor after an escaped quote
        '"\\\\"',
    ],
)
def test_brackets_inside_strings_do_not_count(text: str) -> None:
    assert rtvi.parse(wrapped('{"content":' + text + "}")).data == {"content": json.loads(text)}


@pytest.mark.parametrize(
    "raw",
    [
        "[" * 10_000,  # unbalanced
        '"' + '\\"' * 5000,  # an unterminated string of escaped quotes
        '"' + '\\"' * 5000 + "\\",
        "1" * 5000,  # more digits than Python converts
        b"\xff\xfe",  # not UTF-8
        '{"label":"rtvi-ai","type":"send-text","data":{"content":"\\ud800"}}',  # an unpaired surrogate
        '{"label":"rtvi-ai","type":"x","data":[1]}',
        '{"label":"rtvi-ai","type":1}',
    ],
)
def test_hostile_input_is_a_protocol_error(raw: str | bytes) -> None:
    with pytest.raises(rtvi.ProtocolError):
        rtvi.parse(raw)


def test_bytes_are_parsed_as_utf8() -> None:
    assert rtvi.parse(wrapped('{"content":"caf\u00e9"}').encode()).data == {"content": "caf\u00e9"}
