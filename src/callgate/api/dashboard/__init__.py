"""The dashboard at ``/dashboard``: server-rendered pages for people signed in with a password (the
REST API stays key-based). ``install(app)`` mounts it."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from callgate.api import problems
from callgate.api.dashboard import actions, errors, pages, signin, telephony
from callgate.api.dashboard.session import PREFIX, SignInRequired, login_path


def install(app: FastAPI) -> None:
    for module in (signin, pages, actions, telephony, errors):  # errors' catch-all last
        app.include_router(module.router)
    problems.register_renderer(PREFIX, errors.error_page)

    async def on_sign_in_required(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, SignInRequired)
        if request.method == "GET" and "text/html" in request.headers.get("accept", ""):
            return RedirectResponse(login_path(exc.next_path), status_code=303)
        return JSONResponse(
            {"type": "about:blank", "title": "Sign in first", "status": 401, "code": "unauthenticated"},
            status_code=401,
            media_type="application/problem+json",
        )

    app.add_exception_handler(SignInRequired, on_sign_in_required)
