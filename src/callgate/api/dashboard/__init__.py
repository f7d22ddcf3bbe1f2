"""The dashboard at ``/dashboard``: server-rendered pages for people signed in with a password (the
REST API stays key-based). ``install(app)`` mounts it."""

from __future__ import annotations

from urllib.parse import urlsplit

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from callgate.api import problems
from callgate.api.dashboard import actions, errors, pages, signin, telephony
from callgate.api.dashboard.session import PREFIX, SignInRequired, login_path


def _referring_path(request: Request) -> str:
    """The path (and query) of the page that made ``request``, if it is one of this server's; the
    sign-in page keeps only dashboard paths of it (``safe_next``)."""
    referer = urlsplit(request.headers.get("referer", ""))
    if referer.netloc != request.url.netloc:
        return PREFIX
    return referer.path + (f"?{referer.query}" if referer.query else "")


def install(app: FastAPI) -> None:
    for module in (signin, pages, actions, telephony, errors):  # errors' catch-all last
        app.include_router(module.router)
    problems.register_renderer(PREFIX, errors.error_page)

    async def on_sign_in_required(request: Request, exc: Exception) -> Response:
        """A browser signs in and comes back: to the page it asked for, or after a form posted with
        a session that has ended (idle, signed out), to the page the form was on."""
        assert isinstance(exc, SignInRequired)
        if errors.wants_page(request):
            target = exc.next_path if request.method == "GET" else _referring_path(request)
            return RedirectResponse(login_path(target), status_code=303)
        return JSONResponse(
            {"type": "about:blank", "title": "Sign in first", "status": 401, "code": "unauthenticated"},
            status_code=401,
            media_type="application/problem+json",
        )

    app.add_exception_handler(SignInRequired, on_sign_in_required)
