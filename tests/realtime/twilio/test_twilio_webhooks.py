"""Twilio's webhooks and REST API against a fake Twilio: signatures, TwiML, outbound calls and their
status callbacks (no audio; see test_twilio_media.py for calls that talk)."""

from __future__ import annotations

from typing import Any
from xml.etree import ElementTree

from callgate.domain.telephony import NewPhoneCall
from callgate.realtime.twilio.outbound import place_twilio_call
from callgate.realtime.twilio.signature import FormParams, valid
from tests.realtime.twilio.conftest import CALLER, NUMBER, Line, twilio_line
from tests.support.fake_twilio import FakeTwilio, is_call_sid, sign, stream_of
from tests.support.world import World, WorldFactory

VOICE = "http://testserver/telephony/twilio/voice"


def test_signature_is_twilios_documented_example() -> None:
    """Twilio's documentation example: this URL, these parameters, auth token 12345."""
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    params = [
        ("CallSid", "CA1234567890ABCDE"),
        ("Caller", "+12349013030"),
        ("Digits", "1234"),
        ("From", "+12349013030"),
        ("To", "+18005551212"),
    ]
    expected = "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
    assert sign("12345", url, params) == expected
    form = FormParams.of(params)
    assert valid(auth_token="12345", urls=[url], params=form, signature=expected)
    assert not valid(auth_token="12346", urls=[url], params=form, signature=expected)
    tampered = FormParams.of([*params[:-1], ("To", "+18005551213")])
    assert not valid(auth_token="12345", urls=[url], params=tampered, signature=expected)


async def line(world: World, fake: FakeTwilio, *, max_live_calls: int = 20) -> Line:
    team = await world.team("acme", max_live_calls=max_live_calls)
    return await twilio_line(world, fake, team, team.agent_id)


async def call_of(world: World, line: Line, call_id: str) -> dict[str, Any]:
    r = await world.client.get(f"/v1/calls/{call_id}", headers=line.team.auth())
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def test_voice_webhook_checks_the_signature_and_answers_a_media_stream(
    world: World, fake_twilio: FakeTwilio
) -> None:
    ours = await line(world, fake_twilio)
    call = fake_twilio.add_inbound_call(to=NUMBER, from_=CALLER)
    params = fake_twilio.voice_params(call)

    r = await fake_twilio.post_webhook(VOICE, params, signature="", client=world.client)
    assert r.status_code == 403
    forged = sign("not-the-token", VOICE, params)
    r = await fake_twilio.post_webhook(VOICE, params, signature=forged, client=world.client)
    assert r.status_code == 403
    other_url = sign(fake_twilio.auth_token, "http://testserver/elsewhere", params)
    r = await fake_twilio.post_webhook(VOICE, params, signature=other_url, client=world.client)
    assert r.status_code == 403

    r = await fake_twilio.post_webhook(VOICE, params, client=world.client)
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/xml")
    root = ElementTree.fromstring(r.text)
    assert root.tag == "Response" and [c.tag for c in root] == ["Connect"]
    url, parameters = stream_of(r.text)
    assert url == "ws://testserver/telephony/twilio/media"
    assert set(parameters) == {"call_id", "token"}

    body = await call_of(world, ours, parameters["call_id"])
    assert body["kind"] == "phone" and body["transport"] == "twilio" and body["status"] == "created"
    assert body["agent_id"] == ours.agent_id
    assert body["data"]["twilio_call_sid"] == call.sid


async def test_voice_webhook_behind_a_proxy_uses_the_public_url(
    world_with: WorldFactory, fake_twilio: FakeTwilio
) -> None:
    async with world_with(public_url="https://calls.example.com") as world:
        await line(world, fake_twilio)
        call = fake_twilio.add_inbound_call(to=NUMBER, from_=CALLER)
        params = fake_twilio.voice_params(call)
        # Twilio signed the URL it called, not the one the server sees behind the proxy.
        public = sign(fake_twilio.auth_token, "https://calls.example.com/telephony/twilio/voice", params)
        r = await fake_twilio.post_webhook(VOICE, params, signature=public, client=world.client)
        assert r.status_code == 200, r.text
        url, _ = stream_of(r.text)
        assert url == "wss://calls.example.com/telephony/twilio/media"


async def test_unknown_number_and_a_full_team_are_answered_in_twiml(
    world: World, fake_twilio: FakeTwilio
) -> None:
    await line(world, fake_twilio, max_live_calls=0)
    unknown = fake_twilio.add_inbound_call(to="+14155550111", from_=CALLER)
    r = await fake_twilio.post_webhook(VOICE, fake_twilio.voice_params(unknown), client=world.client)
    assert r.status_code == 200
    root = ElementTree.fromstring(r.text)
    assert [c.tag for c in root] == ["Say", "Hangup"] and "not in service" in (root[0].text or "")

    full = fake_twilio.add_inbound_call(to=NUMBER, from_=CALLER)
    r = await fake_twilio.post_webhook(VOICE, fake_twilio.voice_params(full), client=world.client)
    assert r.status_code == 200
    root = ElementTree.fromstring(r.text)
    assert [(c.tag, c.attrib) for c in root] == [("Reject", {"reason": "busy"})]

    r = await world.client.post(VOICE, content=b"\xff" * 100_000)  # garbage: never a 500
    assert r.status_code == 200 and "not in service" in r.text


def spec(**fields: Any) -> NewPhoneCall:
    return NewPhoneCall(**{"agent_id": "", "from_number": NUMBER, "to_number": "+14155550142", **fields})


async def test_outbound_call_request_shape(world: World, fake_twilio: FakeTwilio) -> None:
    ours = await line(world, fake_twilio)
    placed = await place_twilio_call(
        world.runtime.twilio,
        team_id=ours.team.id,
        spec=spec(agent_id=ours.agent_id),
        base_url="http://testserver",
    )
    assert placed.status == "created" and placed.call_sid is not None and is_call_sid(placed.call_sid)
    [request] = fake_twilio.requests
    assert request.method == "POST"
    assert request.path == f"/2010-04-01/Accounts/{fake_twilio.account_sid}/Calls.json"
    assert request.auth == (fake_twilio.account_sid, fake_twilio.auth_token)
    assert request.field("To") == "+14155550142" and request.field("From") == NUMBER
    url, parameters = stream_of(request.field("Twiml") or "")
    assert url == "ws://testserver/telephony/twilio/media" and parameters["call_id"] == placed.call_id
    assert request.field("StatusCallback") == (
        f"http://testserver/telephony/twilio/status?call={placed.call_id}"
    )
    assert request.fields("StatusCallbackEvent") == ["initiated", "ringing", "answered", "completed"]
    assert request.field("StatusCallbackMethod") == "POST"
    assert request.field("Timeout") == str(world.runtime.settings.twilio_ring_timeout_s)

    body = await call_of(world, ours, placed.call_id)
    assert body["kind"] == "phone" and body["transport"] == "twilio" and body["status"] == "created"
    assert body["data"]["twilio_call_sid"] == placed.call_sid


async def test_status_callbacks_end_calls_with_their_reasons(world: World, fake_twilio: FakeTwilio) -> None:
    ours = await line(world, fake_twilio)
    outcomes = {
        "busy": ("ended", "busy"),
        "no-answer": ("ended", "no_answer"),
        "failed": ("failed", "carrier_error"),
        "canceled": ("ended", "api_request"),
        "completed": ("ended", "transport_lost"),  # answered, but no media stream ever joined
    }
    for twilio_status, (status, reason) in outcomes.items():
        placed = await place_twilio_call(
            world.runtime.twilio,
            team_id=ours.team.id,
            spec=spec(agent_id=ours.agent_id),
            base_url="http://testserver",
        )
        assert placed.call_sid is not None
        call = fake_twilio.calls[placed.call_sid]
        for progress in ("initiated", "ringing"):
            r = await fake_twilio.status_callback(call, progress, client=world.client)
            assert r.status_code == 204
        assert (await call_of(world, ours, placed.call_id))["status"] == "created"

        forged = fake_twilio.voice_params(call)
        bad = await fake_twilio.post_webhook(
            call.status_callback or "", forged, signature="AAAA", client=world.client
        )
        assert bad.status_code == 403

        r = await fake_twilio.status_callback(call, twilio_status, client=world.client)
        assert r.status_code == 204
        body = await call_of(world, ours, placed.call_id)
        assert (body["status"], body["end_reason"]) == (status, reason), twilio_status
        r = await fake_twilio.status_callback(call, "completed", client=world.client)  # later ones: no-ops
        assert r.status_code == 204
        assert (await call_of(world, ours, placed.call_id))["end_reason"] == reason


async def test_a_refused_outbound_call_is_kept_as_carrier_error(
    world: World, fake_twilio: FakeTwilio
) -> None:
    ours = await line(world, fake_twilio)
    fake_twilio.refuse_create = (400, 21214, "'To' number cannot be reached")
    placed = await place_twilio_call(
        world.runtime.twilio,
        team_id=ours.team.id,
        spec=spec(agent_id=ours.agent_id),
        base_url="http://testserver",
    )
    assert placed.status == "failed" and placed.end_reason == "carrier_error"
    assert placed.detail is not None and "cannot be reached" in placed.detail
    body = await call_of(world, ours, placed.call_id)
    assert (body["status"], body["end_reason"]) == ("failed", "carrier_error")


async def test_ending_a_ringing_call_cancels_it_on_twilio(world: World, fake_twilio: FakeTwilio) -> None:
    ours = await line(world, fake_twilio)
    placed = await place_twilio_call(
        world.runtime.twilio,
        team_id=ours.team.id,
        spec=spec(agent_id=ours.agent_id),
        base_url="http://testserver",
    )
    assert placed.call_sid is not None
    r = await world.client.post(f"/v1/calls/{placed.call_id}/end", headers=ours.team.auth())
    assert r.status_code == 200 and r.json()["end_reason"] == "api_request"
    call = fake_twilio.calls[placed.call_sid]
    assert call.updates == [[("Status", "canceled")]] and call.status == "canceled"
