"""INVITE refusals: each check of the INVITE server answers the documented status, and leaves the call
usable (or not) exactly as documented. Media is offered by a real aiortc peer."""

from __future__ import annotations

import asyncio

from tests.support.live import LiveServer
from tests.support.sip_client import (
    Caller,
    Creds,
    SipCall,
    SipClient,
    digest_answer,
    invite,
    new_sip_call,
    sip_call_status,
)


async def test_invite_without_register_is_forbidden(live: LiveServer, sip_call: SipCall) -> None:
    assert await invite(sip_call, register=False) == (403, "Register First")
    assert (await sip_call_status(live, sip_call))["status"] == "created"  # still usable


async def test_invite_with_a_wrong_password_is_challenged(live: LiveServer, sip_call: SipCall) -> None:
    async with SipClient(sip_call.ws_url, sip_call.creds) as client:
        assert (await client.register()).code == 200
        client.creds = Creds(sip_call.creds.username, "wrong", sip_call.creds.domain)
        caller = Caller(client)
        try:
            response = await caller.invite(sip_call.target, sip_call.headers)
        finally:
            await caller.close()
    assert response.code == 401
    assert (await sip_call_status(live, sip_call))["status"] == "created"


async def test_invite_without_the_required_header_is_forbidden(live: LiveServer, sip_call: SipCall) -> None:
    assert await invite(sip_call, headers={}) == (403, "Missing X-Callgate-Call-Id")
    wrong = {name: "call_0000" for name in sip_call.headers}
    assert await invite(sip_call, headers=wrong) == (403, "Missing X-Callgate-Call-Id")
    assert (await sip_call_status(live, sip_call))["status"] == "created"


async def test_invite_to_another_target_is_not_found(sip_call: SipCall) -> None:
    assert (await invite(sip_call, target=f"sip:someone@{sip_call.creds.domain}"))[0] == 404


async def test_invite_with_expired_credentials_is_forbidden(live: LiveServer, sip_call: SipCall) -> None:
    async with SipClient(sip_call.ws_url, sip_call.creds) as client:
        assert (await client.register()).code == 200
        live.move_clock(live.runtime.settings.join_deadline_s + 1)
        caller = Caller(client)
        try:
            response = await caller.invite(sip_call.target, sip_call.headers)
        finally:
            await caller.close()
    assert (response.code, response.phrase) == (403, "Credentials Expired")


async def test_invite_without_sdp_is_not_acceptable(sip_call: SipCall) -> None:
    async with SipClient(sip_call.ws_url, sip_call.creds) as client:
        assert (await client.register()).code == 200
        response = await client.request(
            "INVITE", sip_call.target, to=sip_call.target, headers=list(sip_call.headers.items())
        )
        assert response.code == 488
        plain = [*sip_call.headers.items(), ("Content-Type", "text/plain")]
        response = await client.request(
            "INVITE", sip_call.target, to=sip_call.target, headers=plain, body=b"hi"
        )
        assert response.code == 415 and response.headers.get("Accept") == "application/sdp"


async def test_invite_with_a_non_webrtc_offer_is_not_acceptable(live: LiveServer, sip_call: SipCall) -> None:
    sdp = (
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        "m=audio 4000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
    )
    async with SipClient(sip_call.ws_url, sip_call.creds) as client:
        assert (await client.register()).code == 200
        headers = [*sip_call.headers.items(), ("Content-Type", "application/sdp")]
        response = await client.request(
            "INVITE", sip_call.target, to=sip_call.target, headers=headers, body=sdp.encode()
        )
    assert response.code == 488 and "DTLS" in (response.headers.get("Warning") or "")
    assert (await sip_call_status(live, sip_call))["status"] == "created"


async def test_cancel_before_the_answer(live: LiveServer, sip_call: SipCall) -> None:
    async with SipClient(sip_call.ws_url, sip_call.creds) as client:
        assert (await client.register()).code == 200
        caller = Caller(client)
        sdp = await caller.offer()
        challenge = await client.request("INVITE", sip_call.target, to=sip_call.target, authenticate=False)
        auth = digest_answer(
            client.challenge(challenge), creds=sip_call.creds, method="INVITE", uri=sip_call.target
        )
        headers = [*sip_call.headers.items(), ("Content-Type", "application/sdp"), ("Authorization", auth)]
        data, branch, cseq = client.build(
            "INVITE",
            sip_call.target,
            to=sip_call.target,
            call_id="cancel-me",
            headers=headers,
            body=sdp.encode(),
        )
        await client.send_raw(data.decode())
        await client.wait(lambda: any(r.code == 180 for r in client.inbox.responses))
        cancel, _, _ = client.build(
            "CANCEL", sip_call.target, to=sip_call.target, call_id="cancel-me", cseq=cseq, via_branch=branch
        )
        cancelled = await client.send(cancel, cseq=cseq, method="CANCEL")
        assert cancelled.code == 200
        await client.wait(lambda: any(r.code == 487 for r in client.inbox.responses))
        assert not any(r.code == 200 and r.cseq.method == "INVITE" for r in client.inbox.responses)
        await caller.close()
    for _ in range(100):
        body = await sip_call_status(live, sip_call)
        if body["status"] in ("ended", "failed", "created"):
            break
        await asyncio.sleep(0.05)
    # Cancelled before or after the join: never left connecting.
    assert body["status"] == "created" or body["end_reason"] == "caller_hangup"


async def test_cancel_of_an_unknown_invite(sip_call: SipCall) -> None:
    async with SipClient(sip_call.ws_url, sip_call.creds) as client:
        response = await client.request("CANCEL", sip_call.target, to=sip_call.target, authenticate=False)
        assert response.code == 481


async def test_credentials_of_another_team_call_do_not_reach_it(live: LiveServer) -> None:
    first = await new_sip_call(live)
    other_team = await live.world.team("globex")
    second = await new_sip_call(live, team=other_team)
    # First's credentials, second's target and header: authenticated as first, so not second's target.
    async with SipClient(first.ws_url, first.creds) as client:
        assert (await client.register()).code == 200
        caller = Caller(client)
        try:
            response = await caller.invite(second.target, second.headers)
        finally:
            await caller.close()
    assert response.code == 404
    assert (await sip_call_status(live, second))["status"] == "created"
