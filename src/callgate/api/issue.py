"""Issuing a web call: the one code path every route and dialect uses to create one.

It writes the call (capacity-checked, with its ``call.created`` event), signs the single-use token, and
builds the connection details for the chosen transport.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace
from datetime import timedelta
from urllib.parse import urlsplit

from fastapi import Request

from callgate.api.schemas.calls import IceServerPublic, SipPublic, Transport, WebCallPublic
from callgate.auth import sip, tokens
from callgate.domain import calls
from callgate.domain.ids import new_id
from callgate.domain.keys import Principal
from callgate.errors import NotFound
from callgate.runtime import Runtime


@dataclass(frozen=True, slots=True)
class BaseURLs:
    http: str
    ws: str
    host: str

    @classmethod
    def of(cls, runtime: Runtime, request: Request) -> BaseURLs:
        return _base_urls((runtime.settings.public_url or str(request.base_url)).rstrip("/"))


@functools.lru_cache(maxsize=64)
def _base_urls(base: str) -> BaseURLs:
    parts = urlsplit(base)
    ws_scheme = "wss" if parts.scheme == "https" else "ws"
    return BaseURLs(
        http=base, ws=f"{ws_scheme}://{parts.netloc}{parts.path}", host=parts.hostname or "localhost"
    )


async def issue_web_call(
    runtime: Runtime, principal: Principal, *, urls: BaseURLs, spec: calls.NewCall
) -> tuple[calls.CreatedCall, WebCallPublic]:

    if not principal.may_use_agent(spec.agent_id):
        raise NotFound(f"no agent with id {spec.agent_id!r}")
    now = runtime.clock.now()
    ttl = principal.token_ttl_s or runtime.settings.join_deadline_s
    call_id = new_id("call")
    creds = sip.new_credentials(call_id=call_id, realm=urls.host) if spec.transport == Transport.SIP else None
    spec = replace(spec, id=call_id, sip_auth=creds.stored() if creds else None)
    deadline = now + timedelta(seconds=ttl)
    pending = calls.PendingCall(team_id=principal.team_id, spec=spec, now=now, join_deadline=deadline)
    call = await runtime.db.write_many(calls.create_calls, pending)
    runtime.metrics.calls_created.labels(transport=spec.transport).inc()
    token, claims = tokens.issue(
        key=runtime.signing_key,
        call_id=call.id,
        team_id=call.team_id,
        transport=call.transport,
        now=now,
        ttl_s=ttl,
    )
    transport = Transport(call.transport)
    public = WebCallPublic(
        id=call.id,
        status=call.status,
        agent_id=call.agent_id,
        transport=transport,
        mode=call.mode,
        created_at=call.created_at,
        token=token,
        expires_at=claims.expires_at,
        websocket_url=f"{urls.ws}/v1/calls/{call.id}/ws?token={token}"
        if transport is Transport.WEBSOCKET
        else None,
        webrtc_offer_url=f"{urls.http}/v1/calls/{call.id}/webrtc/offer?token={token}"
        if transport is Transport.WEBRTC
        else None,
        sip=SipPublic(
            ws_url=f"{urls.ws}/sip",
            sip_domain=creds.realm,
            sip_username=creds.username,
            sip_password=creds.password,
            target=creds.target,
            headers=creds.headers,
        )
        if creds
        else None,
        ice_servers=[IceServerPublic(**server.model_dump()) for server in runtime.settings.ice_servers]
        if transport in (Transport.WEBRTC, Transport.SIP)
        else None,
    )
    return call, public
