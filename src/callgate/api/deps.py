"""FastAPI dependencies: the runtime, the calling key, its rate limit and its origin."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, Response

from callgate.auth.keys import KeyType, normalize_origin
from callgate.domain.keys import Principal
from callgate.errors import Forbidden, OriginNotAllowed, RateLimited, Unauthenticated
from callgate.runtime import Runtime


async def get_runtime(request: Request) -> Runtime:
    # async: FastAPI would run a sync dependency in its thread pool, on every request.
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def bearer(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise Unauthenticated("send your API key as `Authorization: Bearer <key>`")
    return value.strip()


async def principal_for(runtime: Runtime, raw_key: str, response: Response | None) -> Principal:
    """Authenticate ``raw_key`` and count the request against its rate limit."""
    principal = await runtime.keys.authenticate(raw_key, now=runtime.clock.now())
    try:
        decision = await runtime.limiter.hit(principal.rate_limit, principal.key_id)
    except RateLimited:
        runtime.metrics.rate_limited.inc()
        raise
    if response is not None:
        response.headers.update(decision.headers())
    return principal


# The key dependencies take only the request and response (no sub-dependencies): FastAPI resolves a
# dependency tree per request, and on the hottest route (creating calls) each level costs.


async def any_key(request: Request, response: Response) -> Principal:
    return await principal_for(await get_runtime(request), bearer(request), response)


async def secret_key(request: Request, response: Response) -> Principal:
    principal = await any_key(request, response)
    if principal.type is not KeyType.SECRET:
        raise Forbidden(f"a {principal.type} key cannot use this route; use a secret key")
    return principal


def check_origin(principal: Principal, request: Request) -> None:
    """Publishable keys only work from the origins they list."""
    if principal.type is not KeyType.PUBLISHABLE:
        return
    origin = request.headers.get("origin")
    try:
        normalized = normalize_origin(origin) if origin else None
    except ValueError:
        normalized = None
    if normalized is None or normalized not in principal.allowed_origins:
        raise OriginNotAllowed("this publishable key does not allow requests from that origin")


async def browser_key(request: Request, response: Response) -> Principal:
    """Publishable or shared keys (the browser-facing routes); secret keys are welcome too."""
    principal = await any_key(request, response)
    check_origin(principal, request)
    return principal


SecretPrincipal = Annotated[Principal, Depends(secret_key)]
BrowserPrincipal = Annotated[Principal, Depends(browser_key)]
