"""Operations: liveness, readiness, Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from callgate.api.deps import RuntimeDep
from callgate.errors import ServiceUnavailable
from callgate.metrics import CONTENT_TYPE_LATEST, exposition

router = APIRouter(tags=["operations"])


@router.get("/healthz", operation_id="healthz")
async def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz", operation_id="readyz")
async def readyz(runtime: RuntimeDep) -> dict[str, str]:
    """The database (and Redis, when configured) answer, and the node is not shutting down."""
    if runtime.admission.draining:
        raise ServiceUnavailable("this node is shutting down")
    if not await runtime.db.ping():
        raise ServiceUnavailable("the database is not reachable")
    if runtime.redis is not None:
        try:
            await runtime.redis.ping()
        except Exception as exc:
            raise ServiceUnavailable("Redis is not reachable") from exc
    return {"status": "ready"}


@router.get("/metrics", operation_id="metrics", include_in_schema=False)
async def metrics(runtime: RuntimeDep) -> Response:
    runtime.metrics.live_sessions.set(runtime.control.live_count)
    return Response(exposition(runtime.metrics.registry), media_type=CONTENT_TYPE_LATEST)
