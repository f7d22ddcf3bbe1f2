"""``POST /v1/phone-calls``: an agent calls a phone, through the carrier of the ``from_number``.

The route writes the call (:func:`callgate.domain.telephony.prepare_phone_call`) and hands the
:class:`~callgate.domain.telephony.Dial` to the node's dialer for the carrier's kind
(``runtime.dialers``: the SIP trunk for ``sip`` carriers; Twilio plugs in the same way). A number
without a carrier, or on a carrier no dialer on this node serves, answers ``201`` with a call that
already failed ``telephony_unavailable``. The outcome follows on the call: ``in_progress`` once answered,
or an end reason (``busy``, ``no_answer``, ``declined``, ``carrier_error``).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request, status
from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field

from callgate.api.calls import call_view, call_webhook
from callgate.api.deps import RuntimeDep, SecretPrincipal
from callgate.api.issue import BaseURLs
from callgate.api.schemas.calls import CallPublic
from callgate.domain import calls, telephony
from callgate.runtime import Runtime

if TYPE_CHECKING:
    from callgate.store.models import Call

router = APIRouter(tags=["phone-calls"])

E164 = r"^\+?[1-9][0-9]{6,14}$"


class PhoneCallCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    agent_id: str = Field(min_length=1, max_length=64)
    from_number: str = Field(pattern=E164, description="One of your numbers, on a carrier that dials.")
    to_number: str = Field(pattern=E164, description="The number to call (E.164).")
    variables: dict[str, Any] = Field(default_factory=dict)
    metadata: dict[str, Any] = Field(default_factory=dict)
    webhook_url: AnyHttpUrl | None = Field(
        default=None, description="Also send this call's events here (signed with the team's secret)."
    )
    ring_timeout_s: float = Field(
        default=30.0, ge=1, le=300, description="Ring this long without an answer, then give up: no_answer."
    )


@router.post("/v1/phone-calls", status_code=status.HTTP_201_CREATED, operation_id="createPhoneCall")
async def create_phone_call(
    body: PhoneCallCreate, request: Request, principal: SecretPrincipal, runtime: RuntimeDep
) -> CallPublic:
    spec = telephony.NewPhoneCall(
        agent_id=body.agent_id,
        from_number=body.from_number,
        to_number=body.to_number,
        variables=body.variables,
        metadata=body.metadata,
        options={"ring_timeout_s": body.ring_timeout_s},
        webhook=await call_webhook(runtime, body.webhook_url),
    )
    now = runtime.clock.now()
    # The callee answers within the ring timeout; then the call's media joins.
    deadline = now + timedelta(seconds=body.ring_timeout_s + runtime.settings.join_deadline_s)
    call, _, dial = await runtime.db.write(
        lambda s: telephony.prepare_phone_call(
            s,
            team_id=principal.team_id,
            spec=spec,
            now=now,
            join_deadline=deadline,
            dialable=frozenset(runtime.dialers),
        )
    )
    runtime.metrics.calls_created.labels(transport=call.transport).inc()
    base_url = BaseURLs.of(runtime, request).http
    dial_out(runtime, call, dial, callback_base=base_url)
    async with runtime.db.read() as s:
        stored = await calls.get_call(s, team_id=principal.team_id, call_id=call.id)
        return await call_view(s, stored, base_url=base_url)


def dial_out(runtime: Runtime, call: Call, dial: telephony.Dial | None, *, callback_base: str) -> None:
    """Hand a written phone call to the dialer of its carrier's kind (or count it as already failed)."""
    if dial is not None:
        runtime.dialers[dial.carrier.kind].dial(replace(dial, callback_base=callback_base))
    elif call.end_reason is not None:
        runtime.metrics.calls_ended.labels(reason=call.end_reason).inc()
