"""/v1/webhook-endpoints, /v1/webhook-signing-secret, /v1/webhook-deliveries, /v1/webhook-replays."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Query, status

from callgate.api.calls import call_view, new_call_view
from callgate.api.deps import RuntimeDep, SecretPrincipal
from callgate.api.schemas.common import Cursor, ListPage, Time
from callgate.api.schemas.webhooks import (
    AttemptPublic,
    DeliveryDetail,
    DeliveryPublic,
    EventTypePublic,
    ReplayCreate,
    ReplayPublic,
    SecretRotate,
    SecretRotated,
    SigningSecretPublic,
    WebhookEndpointCreate,
    WebhookEndpointCreated,
    WebhookEndpointPublic,
    WebhookEndpointUpdate,
)
from callgate.errors import ValidationFailed
from callgate.net_guard import check_url
from callgate.runtime import Runtime
from callgate.webhooks import deliveries, endpoints, events, outbox
from callgate.webhooks.deliveries import DeliveryStatus

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from callgate.store.models import Call
    from callgate.store.models_webhooks import WebhookDelivery

router = APIRouter(tags=["webhooks"])
Limit = Annotated[int, Query(ge=1, le=200)]


def install(runtime: Runtime) -> None:
    """Webhook payloads render a call exactly as ``GET /v1/calls/{id}`` does (absolute recording URLs
    need ``CALLGATE_PUBLIC_URL``; without it they are paths)."""
    base = (runtime.settings.public_url or "").rstrip("/")

    async def render(session: AsyncSession, call: Call) -> dict[str, Any]:
        return (await call_view(session, call, base_url=base)).model_dump(mode="json")

    def render_new(call: Call) -> dict[str, Any] | None:
        view = new_call_view(call, base_url=base)
        return view.model_dump(mode="json") if view is not None else None

    events.set_call_renderer(render, new_call=render_new)


async def checked_url(runtime: Runtime, url: str, *, field: str) -> str:
    """``url`` if the outbound guard allows it now, else a 422 naming ``field``."""
    await check_url(url, runtime.webhooks.policy, field=field)
    return url


def _aware(**values: datetime | None) -> None:
    for name, value in values.items():
        if value is not None and value.tzinfo is None:
            raise ValidationFailed(
                f"{name} needs a timezone",
                errors=[
                    {"field": f"query.{name}", "message": "give a timezone, e.g. Z", "type": "value_error"}
                ],
            )


def _delivery(row: WebhookDelivery, event_id: str) -> dict[str, Any]:
    fields = {name: getattr(row, name) for name in DeliveryPublic.model_fields if hasattr(row, name)}
    fields["event_id"] = event_id
    if row.status != DeliveryStatus.PENDING:
        fields["next_attempt_at"] = None
    return fields


# ----------------------------------------------------------------------------------------- catalogue


@router.get("/v1/webhook-event-types", operation_id="listWebhookEventTypes")
async def list_event_types(principal: SecretPrincipal) -> list[EventTypePublic]:
    return [
        EventTypePublic(type=t.value, description=t.description, opt_in=t in events.OPT_IN)
        for t in events.EventType
    ]


# ----------------------------------------------------------------------------------------- endpoints


@router.post(
    "/v1/webhook-endpoints", status_code=status.HTTP_201_CREATED, operation_id="createWebhookEndpoint"
)
async def create_endpoint(
    body: WebhookEndpointCreate, principal: SecretPrincipal, runtime: RuntimeDep
) -> WebhookEndpointCreated:
    """The response carries the signing secret; it is never shown again (rotate to get a new one)."""
    fields = body.model_dump(mode="json")
    fields["url"] = await checked_url(runtime, fields["url"], field="body.url")
    now = runtime.clock.now()
    endpoint = await runtime.db.write(
        lambda s: endpoints.create_endpoint(s, team_id=principal.team_id, fields=fields, now=now)
    )
    return WebhookEndpointCreated.model_validate(endpoint)


@router.get("/v1/webhook-endpoints", operation_id="listWebhookEndpoints")
async def list_endpoints(
    principal: SecretPrincipal, runtime: RuntimeDep, limit: Limit = 50, cursor: Cursor = None
) -> ListPage[WebhookEndpointPublic]:
    async with runtime.db.read() as s:
        page = await endpoints.list_endpoints(s, team_id=principal.team_id, limit=limit, cursor=cursor)
    return ListPage(
        data=[WebhookEndpointPublic.model_validate(e) for e in page.items], next_cursor=page.next_cursor
    )


@router.get("/v1/webhook-endpoints/{endpoint_id}", operation_id="getWebhookEndpoint")
async def get_endpoint(
    endpoint_id: str, principal: SecretPrincipal, runtime: RuntimeDep
) -> WebhookEndpointPublic:
    async with runtime.db.read() as s:
        endpoint = await endpoints.get_endpoint(s, team_id=principal.team_id, endpoint_id=endpoint_id)
    return WebhookEndpointPublic.model_validate(endpoint)


@router.patch("/v1/webhook-endpoints/{endpoint_id}", operation_id="updateWebhookEndpoint")
async def update_endpoint(
    endpoint_id: str, body: WebhookEndpointUpdate, principal: SecretPrincipal, runtime: RuntimeDep
) -> WebhookEndpointPublic:
    changes = body.changes()
    if "url" in changes:
        changes["url"] = await checked_url(runtime, changes["url"], field="body.url")
    now = runtime.clock.now()
    endpoint = await runtime.db.write(
        lambda s: endpoints.update_endpoint(
            s, team_id=principal.team_id, endpoint_id=endpoint_id, changes=changes, now=now
        )
    )
    return WebhookEndpointPublic.model_validate(endpoint)


@router.delete(
    "/v1/webhook-endpoints/{endpoint_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    operation_id="deleteWebhookEndpoint",
)
async def delete_endpoint(endpoint_id: str, principal: SecretPrincipal, runtime: RuntimeDep) -> None:
    """Its pending deliveries are cancelled; its delivery history stays listed."""
    now = runtime.clock.now()
    await runtime.db.write(
        lambda s: endpoints.delete_endpoint(s, team_id=principal.team_id, endpoint_id=endpoint_id, now=now)
    )


@router.post("/v1/webhook-endpoints/{endpoint_id}/rotate-secret", operation_id="rotateWebhookEndpointSecret")
async def rotate_endpoint_secret(
    endpoint_id: str, principal: SecretPrincipal, runtime: RuntimeDep, body: SecretRotate | None = None
) -> SecretRotated:
    overlap = (body or SecretRotate()).overlap_s
    now = runtime.clock.now()
    endpoint = await runtime.db.write(
        lambda s: endpoints.rotate_endpoint_secret(
            s, team_id=principal.team_id, endpoint_id=endpoint_id, now=now, overlap_s=overlap
        )
    )
    return SecretRotated.model_validate(endpoint)


# ----------------------------------------------------------------------------------- team secret


@router.get("/v1/webhook-signing-secret", operation_id="getWebhookSigningSecret")
async def get_signing_secret(principal: SecretPrincipal, runtime: RuntimeDep) -> SigningSecretPublic:
    """The secret that signs deliveries to agents' and calls' `webhook_url` (shown only by rotate)."""
    now = runtime.clock.now()
    row = await runtime.db.write(lambda s: endpoints.team_secret(s, team_id=principal.team_id, now=now))
    return SigningSecretPublic.model_validate(row)


@router.post("/v1/webhook-signing-secret/rotate", operation_id="rotateWebhookSigningSecret")
async def rotate_signing_secret(
    principal: SecretPrincipal, runtime: RuntimeDep, body: SecretRotate | None = None
) -> SecretRotated:
    overlap = (body or SecretRotate()).overlap_s
    now = runtime.clock.now()
    row = await runtime.db.write(
        lambda s: endpoints.rotate_team_secret(s, team_id=principal.team_id, now=now, overlap_s=overlap)
    )
    return SecretRotated.model_validate(row)


# ----------------------------------------------------------------------------------- deliveries


@router.get("/v1/webhook-deliveries", operation_id="listWebhookDeliveries")
async def list_deliveries(
    principal: SecretPrincipal,
    runtime: RuntimeDep,
    limit: Limit = 50,
    cursor: Cursor = None,
    status: DeliveryStatus | None = None,
    event_type: events.EventType | None = None,
    call_id: str | None = None,
    endpoint_id: str | None = None,
    created_after: Time | None = None,
    created_before: Time | None = None,
) -> ListPage[DeliveryPublic]:
    _aware(created_after=created_after, created_before=created_before)
    filters = {
        "status": status.value if status else None,
        "event_type": event_type.value if event_type else None,
        "call_id": call_id,
        "endpoint_id": endpoint_id,
        "created_after": created_after,
        "created_before": created_before,
    }
    async with runtime.db.read() as s:
        page = await deliveries.list_deliveries(
            s, team_id=principal.team_id, limit=limit, cursor=cursor, filters=filters
        )
        ids = await deliveries.event_ids(s, page.items)
    return ListPage(
        data=[DeliveryPublic.model_validate(_delivery(r, ids[r.event_seq])) for r in page.items],
        next_cursor=page.next_cursor,
    )


@router.get("/v1/webhook-deliveries/{delivery_id}", operation_id="getWebhookDelivery")
async def get_delivery(delivery_id: str, principal: SecretPrincipal, runtime: RuntimeDep) -> DeliveryDetail:
    """The delivery with its payload and every attempt (status code, duration, response excerpt)."""
    async with runtime.db.read() as s:
        row = await deliveries.get_delivery(s, team_id=principal.team_id, delivery_id=delivery_id)
        event = await deliveries.event_of(s, delivery=row)
        history = await deliveries.attempts_of(s, delivery_id=row.id)
    return DeliveryDetail.model_validate(
        {
            **_delivery(row, event.id),
            "payload": event.payload,
            "history": [AttemptPublic.model_validate(a) for a in history],
        }
    )


@router.post(
    "/v1/webhook-deliveries/{delivery_id}/retry",
    status_code=status.HTTP_202_ACCEPTED,
    operation_id="retryWebhookDelivery",
)
async def retry_delivery(delivery_id: str, principal: SecretPrincipal, runtime: RuntimeDep) -> DeliveryPublic:
    """Send a dead, cancelled or succeeded delivery again now, with a fresh attempt budget."""
    now = runtime.clock.now()

    async def job(s: AsyncSession) -> DeliveryPublic:
        row = await deliveries.retry(s, team_id=principal.team_id, delivery_id=delivery_id, now=now)
        return DeliveryPublic.model_validate(_delivery(row, (await deliveries.event_of(s, delivery=row)).id))

    public = await runtime.db.write(job)
    runtime.webhooks.dispatcher.wake()
    return public


@router.post("/v1/webhook-replays", status_code=status.HTTP_202_ACCEPTED, operation_id="replayWebhookEvents")
async def replay(body: ReplayCreate, principal: SecretPrincipal, runtime: RuntimeDep) -> ReplayPublic:
    """Queue recorded events again, to the destinations they have now (or to `endpoint_id` only).

    At most `limit` (≤ 1,000) events per request; `next_cursor` continues a wider replay."""
    now = runtime.clock.now()
    done = await runtime.db.write(
        lambda s: outbox.replay(
            s,
            team_id=principal.team_id,
            now=now,
            call_id=body.call_id,
            created_after=body.created_after,
            created_before=body.created_before,
            endpoint_id=body.endpoint_id,
            types=[t.value for t in body.event_types] if body.event_types else None,
            after_seq=int(body.cursor) if body.cursor is not None else None,
            limit=body.limit,
        )
    )
    runtime.webhooks.dispatcher.wake()
    cursor = str(done.after_seq) if done.after_seq is not None else None
    return ReplayPublic(deliveries=done.deliveries, events=done.events, next_cursor=cursor)
