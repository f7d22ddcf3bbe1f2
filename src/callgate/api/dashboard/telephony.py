"""The dashboard's phone numbers and carriers: read by every role, changed by admins. Each change
checks the session's CSRF token, validates with the REST API's schemas and writes through the same
domain functions as ``/v1/phone-numbers`` and ``/v1/carriers``. Carrier secrets never come back to
the page: a stored one shows as ``********``, which posted back unchanged keeps it."""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import TypeAdapter, ValidationError

from callgate.api.carriers import body_fields
from callgate.api.dashboard.forms import field_errors, secret
from callgate.api.dashboard.session import PREFIX, Viewer, back, checked_form, render, require
from callgate.api.deps import RuntimeDep
from callgate.api.schemas.carriers import CarrierCreate, CarrierUpdate
from callgate.api.schemas.contacts import PhoneNumberCreate, PhoneNumberUpdate
from callgate.domain import agents, carriers, phone_numbers, reports
from callgate.domain.carriers import Carrier
from callgate.domain.tools import HIDDEN
from callgate.domain.users import Role, SignedIn
from callgate.errors import Conflict, ValidationFailed
from callgate.runtime import Runtime

router = APIRouter(prefix=PREFIX, include_in_schema=False)
Admin = Annotated[SignedIn, require(Role.ADMIN)]

NUMBER_FIELDS = ("number", "label", "agent_id", "carrier_id")
CARRIER_FIELDS = (
    "name", "kind", "outbound_host", "outbound_port", "outbound_transport", "outbound_username",
    "outbound_password", "outbound_from_domain", "inbound_allowed_addresses", "inbound_username",
    "inbound_password", "account_sid", "auth_token",
)  # fmt: skip
KINDS = ("sip", "twilio")
_CREATE = TypeAdapter(CarrierCreate)
_SEPARATORS = re.compile(r"[\s,]+")


# ------------------------------------------------------------------------------------ phone numbers


async def _numbers_page(
    request: Request,
    runtime: Runtime,
    viewer: SignedIn,
    *,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    async with runtime.db.read() as s:
        numbers = await phone_numbers.list_phone_numbers(s, team_id=viewer.team_id, limit=200, cursor=None)
        trunks = await carriers.list_carriers(s, team_id=viewer.team_id, limit=200, cursor=None)
        names = await reports.agent_names(s, team_id=viewer.team_id)
        live_agents = await agents.list_agents(s, team_id=viewer.team_id, limit=200, cursor=None)
    return render(
        request,
        "numbers.html",
        choices=[(a.id, a.name) for a in live_agents.items],
        viewer=viewer,
        numbers=numbers.items,
        carriers=trunks.items,
        carrier_names={c.id: c.name for c in trunks.items},
        names=names,
        values=values or dict.fromkeys(NUMBER_FIELDS, ""),
        errors=errors or {},
        hidden=HIDDEN,
        status=status_code,
    )


@router.get("/numbers")
async def numbers_page(request: Request, viewer: Viewer, runtime: RuntimeDep) -> HTMLResponse:
    return await _numbers_page(request, runtime, viewer)


@router.post("/numbers")
async def number_create(request: Request, viewer: Admin, runtime: RuntimeDep) -> Response:
    form = await checked_form(request, viewer)
    values = {name: form.get(name, "").strip() for name in NUMBER_FIELDS}
    try:
        body = PhoneNumberCreate.model_validate({k: v or None for k, v in values.items()})
        fields, now = body.model_dump(mode="json"), runtime.clock.now()
        await runtime.db.write(
            lambda s: phone_numbers.create_phone_number(s, team_id=viewer.team_id, fields=fields, now=now)
        )
    except ValidationError as exc:
        errors = field_errors(exc, NUMBER_FIELDS)
        if "number" in errors:
            errors["number"] = "give the number in E.164 form, e.g. +14155550123"
        return await _numbers_page(request, runtime, viewer, values=values, errors=errors, status_code=422)
    except Conflict as exc:
        errors = {"number": exc.detail}
        return await _numbers_page(request, runtime, viewer, values=values, errors=errors, status_code=409)
    return back("/numbers?saved=1")


@router.post("/numbers/{number_id}")
async def number_update(number_id: str, request: Request, viewer: Admin, runtime: RuntimeDep) -> Response:
    """Assign the number to an agent (or to none)."""
    form = await checked_form(request, viewer)
    body = PhoneNumberUpdate.model_validate({"agent_id": form.get("agent_id") or None})
    changes, now = body.model_dump(mode="json", exclude_unset=True), runtime.clock.now()
    await runtime.db.write(
        lambda s: phone_numbers.update_phone_number(
            s, team_id=viewer.team_id, number_id=number_id, changes=changes, now=now
        )
    )
    return back("/numbers?saved=1")


@router.post("/numbers/{number_id}/delete")
async def number_delete(number_id: str, request: Request, viewer: Admin, runtime: RuntimeDep) -> Response:
    await checked_form(request, viewer)
    await runtime.db.write(
        lambda s: phone_numbers.delete_phone_number(s, team_id=viewer.team_id, number_id=number_id)
    )
    return back("/numbers")


# ------------------------------------------------------------------------------------------ carriers


def carrier_values(carrier: Carrier | None, kind: str = "sip") -> dict[str, str]:
    """A carrier as its form shows it: stored secrets as ``********``, never their value."""
    values = dict.fromkeys(CARRIER_FIELDS, "") | {"kind": kind, "outbound_port": "5060"}
    if carrier is None:
        return values
    values |= {"name": carrier.name, "kind": carrier.kind, "account_sid": carrier.account_sid or ""}
    values["auth_token"] = HIDDEN if carrier.has_auth_token else ""
    if (o := carrier.outbound) is not None:
        values |= {
            "outbound_host": o.host,
            "outbound_port": str(o.port),
            "outbound_transport": o.transport,
            "outbound_username": o.username or "",
            "outbound_password": HIDDEN if o.has_password else "",
            "outbound_from_domain": o.from_domain or "",
        }
    if (i := carrier.inbound) is not None:
        values |= {
            "inbound_allowed_addresses": "\n".join(i.allowed_addresses),
            "inbound_username": i.username or "",
            "inbound_password": HIDDEN if i.has_password else "",
        }
    return values


def _sip_side(form: dict[str, str], side: str, fields: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in fields:
        value = form.get(f"{side}_{name}", "").strip()
        if name == "allowed_addresses":
            out[name] = [a for a in _SEPARATORS.split(value) if a]
        elif value or name != "port":
            out[name] = value or None
    change, password = secret(form.get(f"{side}_password", ""))
    if change:
        out["password"] = password
    return out


def carrier_body(form: dict[str, str], kind: str) -> dict[str, Any]:
    """The REST API's request body for the carrier the form describes."""
    body: dict[str, Any] = {"name": form.get("name", "").strip()}
    if kind == "sip":
        outbound = _sip_side(form, "outbound", ("host", "port", "transport", "username", "from_domain"))
        inbound = _sip_side(form, "inbound", ("allowed_addresses", "username"))
        if outbound.get("transport") is None:
            outbound.pop("transport")
        body["outbound"] = outbound if outbound.get("host") else None
        body["inbound"] = inbound if inbound["allowed_addresses"] or inbound["username"] else None
    else:
        body["account_sid"] = form.get("account_sid", "").strip() or None
        change, token = secret(form.get("auth_token", ""))
        if change and token:
            body["auth_token"] = token
    return body


def _carrier_page(
    request: Request,
    viewer: SignedIn,
    carrier: Carrier | None,
    values: dict[str, str],
    errors: dict[str, str],
    status_code: int = 200,
) -> HTMLResponse:
    return render(
        request,
        "carrier.html",
        viewer=viewer,
        carrier=carrier,
        values=values,
        errors=errors,
        kinds=KINDS,
        hidden=HIDDEN,
        status=status_code,
    )


@router.get("/carriers/new")
async def carrier_new(request: Request, viewer: Admin) -> HTMLResponse:
    return _carrier_page(request, viewer, None, carrier_values(None), {})


@router.get("/carriers/{carrier_id}")
async def carrier_page(
    carrier_id: str, request: Request, viewer: Viewer, runtime: RuntimeDep
) -> HTMLResponse:
    async with runtime.db.read() as s:
        carrier = await carriers.get_carrier(s, team_id=viewer.team_id, carrier_id=carrier_id)
    return _carrier_page(request, viewer, carrier, carrier_values(carrier), {})


@router.post("/carriers")
async def carrier_create(request: Request, viewer: Admin, runtime: RuntimeDep) -> Response:
    form = await checked_form(request, viewer)
    kind = form.get("kind", "")
    values = carrier_values(None, kind) | {k: form.get(k, "") for k in CARRIER_FIELDS}
    try:
        if kind not in KINDS:
            raise ValidationFailed("unknown kind", errors=[{"field": "kind", "message": "sip or twilio"}])
        fields = body_fields(_CREATE.validate_python({"kind": kind, **carrier_body(form, kind)}))
        now = runtime.clock.now()
        carrier = await runtime.db.write(
            lambda s: carriers.create_carrier(s, team_id=viewer.team_id, fields=fields, now=now)
        )
    except (ValidationError, ValidationFailed) as exc:
        return _carrier_page(
            request, viewer, None, values, field_errors(exc, CARRIER_FIELDS, tags=KINDS), 422
        )
    return back(f"/carriers/{carrier.id}?saved=1")


@router.post("/carriers/{carrier_id}")
async def carrier_update(carrier_id: str, request: Request, viewer: Admin, runtime: RuntimeDep) -> Response:
    form = await checked_form(request, viewer)
    async with runtime.db.read() as s:
        carrier = await carriers.get_carrier(s, team_id=viewer.team_id, carrier_id=carrier_id)
    values = carrier_values(carrier) | {k: form.get(k, "") for k in CARRIER_FIELDS if k != "kind"}
    try:
        changes = body_fields(CarrierUpdate.model_validate(carrier_body(form, carrier.kind)))
        now = runtime.clock.now()
        await runtime.db.write(
            lambda s: carriers.update_carrier(
                s, team_id=viewer.team_id, carrier_id=carrier_id, changes=changes, now=now
            )
        )
    except (ValidationError, ValidationFailed) as exc:
        errors = field_errors(exc, CARRIER_FIELDS, tags=KINDS)
        return _carrier_page(request, viewer, carrier, values, errors, status_code=422)
    return back(f"/carriers/{carrier_id}?saved=1")


@router.post("/carriers/{carrier_id}/delete")
async def carrier_delete(carrier_id: str, request: Request, viewer: Admin, runtime: RuntimeDep) -> Response:
    """Delete the carrier; its numbers stay, without a carrier (as ``DELETE /v1/carriers/{id}``)."""
    await checked_form(request, viewer)
    await runtime.db.write(
        lambda s: carriers.delete_carrier(s, team_id=viewer.team_id, carrier_id=carrier_id)
    )
    return back("/numbers")
