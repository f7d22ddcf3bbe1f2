"""How a delivery goes on the wire for each method: a body, or (GET) query parameters that are signed."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from urllib.parse import parse_qsl

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from callgate.webhooks.signing import new_secret, signed_headers
from callgate.webhooks.targets import CallWebhook
from callgate.webhooks.wire import prepare

BODY = json.dumps(
    {
        "type": "event_message",
        "text": "Hi + you & me = 100%? ünï",
        "timestamp": 1732442400.25,
        "ok": True,
        "gone": None,
        "nested": {"a": [1, "b"]},
    }
).encode()


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH"])
def test_body_methods_send_and_sign_the_body(method: str) -> None:
    request = prepare(
        method=method, url="https://h.example/x?k=1", body=BODY, content_type="application/json"
    )
    assert (request.method, str(request.url)) == (method, "https://h.example/x?k=1")
    assert request.content == request.signed == BODY
    assert request.content_type == "application/json"


def test_get_sends_the_fields_as_query_parameters_after_the_url_s_own() -> None:
    request = prepare(
        method="GET", url="https://h.example/x?token=a%20b", body=BODY, content_type="application/json"
    )
    assert request.content is None and request.content_type is None
    assert request.signed == request.url.query  # exactly what goes on the request line
    assert parse_qsl(request.url.query.decode(), strict_parsing=True) == [
        ("token", "a b"),
        ("type", "event_message"),
        ("text", "Hi + you & me = 100%? ünï"),
        ("timestamp", "1732442400.25"),
        ("ok", "true"),
        ("nested", '{"a":[1,"b"]}'),
    ]
    assert request.url.path == "/x" and request.url.host == "h.example"


def test_get_of_a_body_that_is_not_an_object_sends_it_whole() -> None:
    request = prepare(method="GET", url="https://h.example/x", body=b"[1,2]", content_type="application/json")
    assert parse_qsl(request.url.query.decode()) == [("payload", "[1,2]")]


def test_a_get_signature_verifies_over_the_query_and_not_over_anything_else() -> None:
    secret, now = new_secret(), datetime.now(UTC)
    request = prepare(method="GET", url="https://h.example/x", body=BODY, content_type="application/json")
    headers = signed_headers(message_id="msg_1", body=request.signed, secrets_=[secret], timestamp=now)
    query = request.url.query.decode()
    Webhook(secret).verify(query, headers, json_parse=False)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(query.replace("event_message", "event_action"), headers, json_parse=False)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(BODY, headers)


def test_methods() -> None:
    with pytest.raises(ValueError, match="method"):
        prepare(method="DELETE", url="https://h.example/x", body=BODY, content_type="application/json")
    assert CallWebhook(url="https://h.example/x", method="GET").stored()["method"] == "GET"
    with pytest.raises(ValueError, match="method"):
        CallWebhook(url="https://h.example/x", method="DELETE")
