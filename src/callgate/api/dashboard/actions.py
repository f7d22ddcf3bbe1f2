"""The dashboard's state changes (POST): each checks the session's CSRF token and the role it needs
on the server, then calls the same domain functions as the REST API."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import APIRouter, Request, status
from fastapi.responses import HTMLResponse, Response
from pydantic import TypeAdapter, ValidationError

from callgate.api.agents import check_webhook_url
from callgate.api.dashboard.forms import field_errors
from callgate.api.dashboard.pages import agent_form_values
from callgate.api.dashboard.session import PREFIX, back, checked_form, render, require
from callgate.api.deps import RuntimeDep
from callgate.api.issue import BaseURLs, issue_web_call
from callgate.api.schemas.agents import AgentCreate
from callgate.api.schemas.calls import Mode, Transport, WebCallPublic
from callgate.api.schemas.common import Strict
from callgate.api.schemas.tools import AgentTool, check_tools
from callgate.api.schemas.webhooks import WebhookEndpointCreate
from callgate.api.webhooks import checked_url
from callgate.auth.keys import KeyType
from callgate.domain import agents, calls, keys, reports, users
from callgate.domain.keys import Principal
from callgate.domain.users import Role, SignedIn
from callgate.errors import CallgateError, ValidationFailed
from callgate.runtime import Runtime
from callgate.webhooks import endpoints, outbox

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from callgate.store.models import Agent

router = APIRouter(prefix=PREFIX, include_in_schema=False)

Member = Annotated[SignedIn, require(Role.MEMBER)]
Admin = Annotated[SignedIn, require(Role.ADMIN)]
Owner = Annotated[SignedIn, require(Role.OWNER)]

JSON_FIELDS = ("flow", "variables", "stt", "llm", "tts", "turn_detection", "tools")
AGENT_FIELDS = tuple(agent_form_values(None))
TOOL_TYPES = ("http", "client", "end_call", "transfer_call", "send_dtmf", "wait")
_TOOLS = TypeAdapter(list[AgentTool])


# ---------------------------------------------------------------------------------------------- agents


async def _agent_fields(
    runtime: Runtime, form: dict[str, str]
) -> tuple[dict[str, Any] | None, dict[str, str]]:
    """The agent the form describes, validated as ``POST /v1/agents`` validates it (the same schema,
    tool checks and webhook URL guard); or the errors by form field."""
    errors: dict[str, str] = {}
    body: dict[str, Any] = {
        "name": form.get("name", ""),
        "initial_message": form.get("initial_message") or None,
        "voice": form.get("voice") or None,
        "language": form.get("language") or None,
        "webhook_url": form.get("webhook_url") or None,
    }
    for name in ("max_duration_s", "silence_timeout_s"):
        text = form.get(name, "").strip()
        if text:
            body[name] = int(text) if text.isdigit() else text  # a strict int field: "12" is not one
    for name in JSON_FIELDS:
        text = form.get(name, "").strip()
        if not text:
            continue
        try:
            body[name] = json.loads(text)
        except json.JSONDecodeError as exc:
            errors[name] = f"not valid JSON: {exc.msg} (line {exc.lineno})"
    if form.get("kind") == "flow":
        if "flow" not in body and "flow" not in errors:
            errors["flow"] = "a flow agent needs a flow (JSON)"
    else:
        body.pop("flow", None)
        body["prompt"] = form.get("prompt") or None
        if body["prompt"] is None:
            errors["prompt"] = "a prompt agent needs a prompt"
    if errors:
        return None, errors
    if "tools" in body:  # first on their own: the checks across tools then land at the field too
        try:
            check_tools(_TOOLS.validate_python(body["tools"]))
        except ValidationError as exc:
            return None, field_errors(exc, AGENT_FIELDS, tags=TOOL_TYPES, at=("tools",))
        except ValueError as exc:
            return None, {"tools": str(exc)}
    try:
        parsed = AgentCreate.model_validate(body)
        fields = parsed.model_dump(mode="json") | {
            "turn_detection": parsed.turn_detection.stored(),
            "tools": parsed.stored_tools(),
        }
        await check_webhook_url(runtime, fields)
    except (ValidationError, ValidationFailed) as exc:
        return None, field_errors(exc, AGENT_FIELDS, tags=TOOL_TYPES)
    return fields, {}


def _agent_form_again(
    request: Request, viewer: SignedIn, agent: Agent | None, form: dict[str, str], errors: dict[str, str]
) -> HTMLResponse:
    """The agent form as posted, with the errors at their fields (422)."""
    values = agent_form_values(agent) | {k: form.get(k, "") for k in AGENT_FIELDS}
    return render(request, "agent.html", viewer=viewer, agent=agent, values=values, errors=errors, status=422)


@router.post("/agents")
async def agent_create(request: Request, viewer: Admin, runtime: RuntimeDep) -> Response:
    form = await checked_form(request, viewer)
    fields, errors = await _agent_fields(runtime, form)
    if fields is None:
        return _agent_form_again(request, viewer, None, form, errors)
    now = runtime.clock.now()
    try:
        agent = await runtime.db.write(
            lambda s: agents.create_agent(s, team_id=viewer.team_id, fields=fields, now=now)
        )
    except ValidationFailed as exc:  # e.g. a tool header given as ******** on a new agent
        errors = field_errors(exc, AGENT_FIELDS, tags=TOOL_TYPES)
        return _agent_form_again(request, viewer, None, form, errors)
    return back(f"/agents/{agent.id}")


@router.post("/agents/{agent_id}")
async def agent_update(agent_id: str, request: Request, viewer: Admin, runtime: RuntimeDep) -> Response:
    form = await checked_form(request, viewer)
    async with runtime.db.read() as s:
        agent = await agents.get_agent(s, team_id=viewer.team_id, agent_id=agent_id)
    fields, errors = await _agent_fields(runtime, form)
    if fields is None:
        return _agent_form_again(request, viewer, agent, form, errors)
    now = runtime.clock.now()
    try:
        await runtime.db.write(
            lambda s: agents.update_agent(
                s, team_id=viewer.team_id, agent_id=agent_id, changes=fields, now=now
            )
        )
    except ValidationFailed as exc:  # e.g. a tool header kept as ******** that has no stored value
        errors = field_errors(exc, AGENT_FIELDS, tags=TOOL_TYPES)
        return _agent_form_again(request, viewer, agent, form, errors)
    return back(f"/agents/{agent_id}?saved=1")


class TryCall(Strict):
    mode: Mode = Mode.AUDIO
    transport: Literal["websocket", "webrtc"] = "websocket"


@router.post("/agents/{agent_id}/try", status_code=status.HTTP_201_CREATED)
async def agent_try(
    agent_id: str, request: Request, viewer: Member, runtime: RuntimeDep, body: TryCall | None = None
) -> WebCallPublic:
    """A web call to the agent for the signed-in user's browser (the "Try it" panel): no API key is
    exposed to the page; the session and its CSRF token authorise the call."""
    await checked_form(request, viewer)
    body = body or TryCall()
    principal = Principal(
        key_id=f"dashboard:{viewer.user_id}",
        team_id=viewer.team_id,
        type=KeyType.SECRET,
        allowed_origins=(),
        agent_ids=(agent_id,),
        rate_limit="30/minute",
        token_ttl_s=None,
    )
    await runtime.limiter.hit(principal.rate_limit, principal.key_id)
    async with runtime.db.read() as s:
        await agents.get_agent(s, team_id=viewer.team_id, agent_id=agent_id)
    spec = calls.NewCall(
        agent_id=agent_id,
        transport=Transport(body.transport).value,
        mode=body.mode.value,
        variables={},
        metadata={"dashboard": True, "user_id": viewer.user_id},
    )
    _, public = await issue_web_call(runtime, principal, urls=BaseURLs.of(runtime, request), spec=spec)
    return public


# ----------------------------------------------------------------------------------------- webhooks


@router.post("/calls/{call_id}/replay")
async def call_replay(call_id: str, request: Request, viewer: Admin, runtime: RuntimeDep) -> Response:
    """Queue the call's recorded events again to the destinations they have now (page by page: one
    short write per page of events)."""
    await checked_form(request, viewer)
    now = runtime.clock.now()

    def page(after_seq: int | None) -> Callable[[AsyncSession], Awaitable[outbox.Replayed]]:
        async def job(s: AsyncSession) -> outbox.Replayed:
            await calls.get_call(s, team_id=viewer.team_id, call_id=call_id)
            return await outbox.replay(
                s, team_id=viewer.team_id, now=now, call_id=call_id, after_seq=after_seq
            )

        return job

    count, after = 0, None
    while True:
        done = await runtime.db.write(page(after))
        count += done.deliveries
        runtime.webhooks.dispatcher.wake()
        if (after := done.after_seq) is None:
            break
    return back(f"/calls/{call_id}?replayed={count}#deliveries")


@router.post("/webhooks")
async def webhook_create(request: Request, viewer: Admin, runtime: RuntimeDep) -> Response:
    form = await checked_form(request, viewer)
    try:
        body = WebhookEndpointCreate.model_validate(
            {"url": form.get("url", ""), "description": form.get("description") or None}
        )
        url = await checked_url(runtime, str(body.url), field="url")
    except (ValidationError, CallgateError) as exc:
        message = exc.detail if isinstance(exc, CallgateError) else exc.errors()[0]["msg"]
        return render(
            request, "message.html", viewer=viewer, title="Webhook endpoint", message=message, status=422
        )
    fields = body.model_dump(mode="json") | {"url": url}
    now = runtime.clock.now()
    endpoint = await runtime.db.write(
        lambda s: endpoints.create_endpoint(s, team_id=viewer.team_id, fields=fields, now=now)
    )
    async with runtime.db.read() as s:
        found = await endpoints.list_endpoints(s, team_id=viewer.team_id, limit=200, cursor=None)
    return render(
        request,
        "webhooks.html",
        viewer=viewer,
        endpoints=found.items,
        deliveries=[],
        secret=endpoint.secret,
        status=201,
    )


@router.post("/webhooks/{endpoint_id}/delete")
async def webhook_delete(endpoint_id: str, request: Request, viewer: Admin, runtime: RuntimeDep) -> Response:
    await checked_form(request, viewer)
    now = runtime.clock.now()
    await runtime.db.write(
        lambda s: endpoints.delete_endpoint(s, team_id=viewer.team_id, endpoint_id=endpoint_id, now=now)
    )
    return back("/webhooks")


# --------------------------------------------------------------------------------------- keys, users


@router.post("/keys")
async def key_create(request: Request, viewer: Owner, runtime: RuntimeDep) -> Response:
    """The new key is shown in this response only."""
    form = await checked_form(request, viewer)
    now = runtime.clock.now()
    origins = [o.strip() for o in form.get("origins", "").split(",") if o.strip()]
    try:
        key_type = KeyType(form.get("type", "secret"))
        row, plaintext = await runtime.db.write(
            lambda s: keys.create_key(
                s,
                team_id=viewer.team_id,
                key_type=key_type,
                now=now,
                name=form.get("name") or None,
                allowed_origins=origins,
            )
        )
    except (ValueError, CallgateError) as exc:
        message = exc.detail if isinstance(exc, CallgateError) else str(exc)
        async with runtime.db.read() as s:
            listed = await reports.list_keys(s, team_id=viewer.team_id)
        return render(
            request,
            "keys.html",
            viewer=viewer,
            keys=listed,
            created=None,
            errors={"origins": message},
            status=422,
        )
    runtime.origins.invalidate()
    async with runtime.db.read() as s:
        listed = await reports.list_keys(s, team_id=viewer.team_id)
    return render(
        request, "keys.html", viewer=viewer, keys=listed, created=(row.id, plaintext), errors={}, status=201
    )


@router.post("/keys/{key_id}/revoke")
async def key_revoke(key_id: str, request: Request, viewer: Owner, runtime: RuntimeDep) -> Response:
    await checked_form(request, viewer)
    now = runtime.clock.now()
    await runtime.db.write(lambda s: keys.revoke_key(s, team_id=viewer.team_id, key_id=key_id, now=now))
    runtime.keys.forget()
    runtime.origins.invalidate()
    return back("/keys")


@router.post("/users/invite")
async def user_invite(request: Request, viewer: Owner, runtime: RuntimeDep) -> Response:
    """An invitation link, shown once, for the owner to pass on."""
    form = await checked_form(request, viewer)
    now = runtime.clock.now()
    role = users.parse_role(form.get("role", "member"))
    _, token = await runtime.db.write(
        lambda s: users.create_invite(
            s,
            team_id=viewer.team_id,
            email=form.get("email", ""),
            role=role,
            created_by=viewer.user_id,
            now=now,
        )
    )
    link = f"{BaseURLs.of(runtime, request).http}{PREFIX}/invite/{token}"
    async with runtime.db.read() as s:
        people = await users.list_users(s, team_id=viewer.team_id)
        invites = await users.pending_invites(s, team_id=viewer.team_id, now=now)
    return render(request, "users.html", viewer=viewer, people=people, invites=invites, link=link, status=201)


@router.post("/users/{user_id}/role")
async def user_role(user_id: str, request: Request, viewer: Owner, runtime: RuntimeDep) -> Response:
    form = await checked_form(request, viewer)
    role = users.parse_role(form.get("role", ""))
    now = runtime.clock.now()
    await runtime.db.write(
        lambda s: users.set_role(s, team_id=viewer.team_id, user_id=user_id, role=role, now=now)
    )
    return back("/users")


@router.post("/users/{user_id}/delete")
async def user_delete(user_id: str, request: Request, viewer: Owner, runtime: RuntimeDep) -> Response:
    await checked_form(request, viewer)
    await runtime.db.write(lambda s: users.delete_user(s, team_id=viewer.team_id, user_id=user_id))
    return back("/users")
