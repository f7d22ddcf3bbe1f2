"""REGISTER, OPTIONS and the connection itself, against a real server (no media involved)."""

from __future__ import annotations

import pytest
import websockets

from tests.support.live import LiveServer
from tests.support.sip_client import Creds, SipCall, SipClient, digest_answer, new_sip_call, sip_call_status


async def test_register_challenges_with_sha256_then_md5(sip_call: SipCall) -> None:
    async with SipClient(sip_call.ws_url, sip_call.creds) as client:
        assert client.ws.subprotocol == "sip"
        challenged = await client.register_unauthenticated()
        assert challenged.code == 401
        offers = challenged.headers.getlist("WWW-Authenticate")
        assert [o.split("algorithm=")[1].split(",")[0] for o in offers] == ["SHA-256", "MD5"]
        for offer in offers:
            assert f'realm="{sip_call.sip["sip_domain"]}"' in offer and 'qop="auth"' in offer
        assert challenged.to_address.parameters.get("tag")


@pytest.mark.parametrize("algorithm", ["MD5", "SHA-256"])
async def test_register_with_either_algorithm(live: LiveServer, sip_call: SipCall, algorithm: str) -> None:
    async with SipClient(sip_call.ws_url, sip_call.creds, algorithm=algorithm) as client:
        ok = await client.register(expires=300)
        assert ok.code == 200
        contacts = ok.headers.getlist("Contact")
        assert contacts == [f"<{client.contact}>;expires=300"]
        again = await client.register(expires=0)
        assert again.code == 200 and again.headers.getlist("Contact") == []
    assert (await sip_call_status(live, sip_call))[
        "status"
    ] == "created"  # registering does not join the call


async def test_register_echoes_contact_parameters(sip_call: SipCall) -> None:
    async with SipClient(sip_call.ws_url, sip_call.creds) as client:
        contact = (
            f'<{client.contact}>;+sip.ice;reg-id=1;+sip.instance="<urn:uuid:5f0e2a1c-0000-4000-8000-1234>"'
        )
        client.contact_header = contact
        ok = await client.register(expires=9999)
        assert ok.code == 200
        assert ok.headers.getlist("Contact") == [f"{contact};expires=600"]  # capped at 600


async def test_wrong_password_is_challenged_again(sip_call: SipCall) -> None:
    creds = Creds(sip_call.creds.username, "not-the-password", sip_call.creds.domain)
    async with SipClient(sip_call.ws_url, creds) as client:
        refused = await client.register()
        assert refused.code == 401
        assert "stale" not in refused.headers.getlist("WWW-Authenticate")[0]


async def test_unknown_user_is_challenged_like_a_wrong_password(sip_call: SipCall) -> None:
    creds = Creds("u0123456789abcdef", sip_call.creds.password, sip_call.creds.domain)
    async with SipClient(sip_call.ws_url, creds) as client:
        assert (await client.register()).code == 401


async def test_replayed_authorization_is_refused(sip_call: SipCall) -> None:
    async with SipClient(sip_call.ws_url, sip_call.creds) as client:
        challenge = client.challenge(await client.register_unauthenticated())
        uri = f"sip:{sip_call.creds.domain}"
        answer = digest_answer(challenge, creds=sip_call.creds, method="REGISTER", uri=uri)
        first = await client.request("REGISTER", uri, headers=[("Authorization", answer)], authenticate=False)
        assert first.code == 200
        replay = await client.request(
            "REGISTER", uri, headers=[("Authorization", answer)], authenticate=False
        )
        assert replay.code == 401  # the same nonce count again


async def test_nonce_from_another_connection_is_stale(sip_call: SipCall) -> None:
    uri = f"sip:{sip_call.creds.domain}"
    async with SipClient(sip_call.ws_url, sip_call.creds) as first:
        challenge = first.challenge(await first.register_unauthenticated())
    answer = digest_answer(challenge, creds=sip_call.creds, method="REGISTER", uri=uri)
    async with SipClient(sip_call.ws_url, sip_call.creds) as second:
        refused = await second.request(
            "REGISTER", uri, headers=[("Authorization", answer)], authenticate=False
        )
        assert refused.code == 401
        assert all("stale=true" in c for c in refused.headers.getlist("WWW-Authenticate"))
        assert (await second.register()).code == 200  # the fresh challenge works


async def test_old_nonce_is_stale(live: LiveServer, sip_call: SipCall) -> None:
    uri = f"sip:{sip_call.creds.domain}"
    async with SipClient(sip_call.ws_url, sip_call.creds) as client:
        challenge = client.challenge(await client.register_unauthenticated())
        answer = digest_answer(challenge, creds=sip_call.creds, method="REGISTER", uri=uri)
        live.move_clock(301)  # nonces live 300 s (the call's deadline is not reached)
        refused = await client.request(
            "REGISTER", uri, headers=[("Authorization", answer)], authenticate=False
        )
        assert refused.code == 401 and "stale=true" in refused.headers.getlist("WWW-Authenticate")[0]


async def test_expired_credentials_are_forbidden(live: LiveServer, sip_call: SipCall) -> None:
    live.move_clock(live.runtime.settings.join_deadline_s + 1)
    async with SipClient(sip_call.ws_url, sip_call.creds) as client:
        refused = await client.register()
        assert (refused.code, refused.phrase) == (403, "Credentials Expired")


async def test_credentials_of_an_ended_call_are_forbidden(live: LiveServer, sip_call: SipCall) -> None:
    r = await live.world.client.post(f"/v1/calls/{sip_call.id}/end", headers=sip_call.team.auth())
    assert r.status_code in (200, 202), r.text
    async with SipClient(sip_call.ws_url, sip_call.creds) as client:
        refused = await client.register()
        assert (refused.code, refused.phrase) == (403, "Credentials Already Used")


async def test_register_for_another_user_is_forbidden(live: LiveServer, sip_call: SipCall) -> None:
    other = await new_sip_call(live, team=sip_call.team)
    async with SipClient(sip_call.ws_url, sip_call.creds) as client:
        uri = f"sip:{sip_call.creds.domain}"
        refused = await client.request("REGISTER", uri, to=f"sip:{other.creds.username}@{other.creds.domain}")
        assert (refused.code, refused.phrase) == (403, "To Does Not Match Credentials")
    assert (await sip_call_status(live, other))["status"] == "created"


async def test_options_keepalive_and_crlf_ping(sip_call: SipCall) -> None:
    async with SipClient(sip_call.ws_url, sip_call.creds) as client:
        ok = await client.request("OPTIONS", f"sip:{sip_call.creds.domain}", authenticate=False)
        assert ok.code == 200
        assert "INVITE" in (ok.headers.get("Allow") or "") and "application/sdp" in (
            ok.headers.get("Accept") or ""
        )
        seen = len(client.inbox.raw)
        await client.send_raw("\r\n\r\n")
        await client.wait(lambda: len(client.inbox.raw) > seen)
        assert client.inbox.raw[seen] == b"\r\n"


@pytest.mark.parametrize(
    ("method", "status"),
    [("MESSAGE", 405), ("SUBSCRIBE", 405), ("FROBNICATE", 501), ("BYE", 481), ("INFO", 481)],
)
async def test_methods_we_do_not_serve(sip_call: SipCall, method: str, status: int) -> None:
    async with SipClient(sip_call.ws_url, sip_call.creds) as client:
        response = await client.request(method, f"sip:{sip_call.creds.domain}", authenticate=False)
        assert response.code == status
        if status == 405:
            assert "REGISTER" in (response.headers.get("Allow") or "")


async def test_required_extension_is_refused(sip_call: SipCall) -> None:
    async with SipClient(sip_call.ws_url, sip_call.creds) as client:
        uri = f"sip:{sip_call.creds.domain}"
        response = await client.request("OPTIONS", uri, headers=[("Require", "100rel")], authenticate=False)
        assert response.code == 420 and response.headers.get("Unsupported") == "100rel"


async def test_the_sip_subprotocol_is_required(sip_call: SipCall) -> None:
    with pytest.raises(websockets.InvalidStatus) as refused:
        async with websockets.connect(sip_call.ws_url):
            pass
    assert refused.value.response.status_code == 403
