"""The dashboard's sign-in session: the cookie, who is signed in, roles, CSRF and page rendering.

Sessions are server-side rows (``domain.users``); the cookie holds only a random token (HttpOnly,
SameSite=Lax, Secure in production, scoped to ``/dashboard``). Every state change carries the session's
CSRF token, in a form field or an ``X-CSRF-Token`` header, compared in constant time.
"""

from __future__ import annotations

import hmac
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qsl, quote, urlsplit

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from callgate.api.deps import RuntimeDep
from callgate.config import Environment as Env
from callgate.domain import users
from callgate.domain.users import Role, SignedIn
from callgate.errors import Forbidden
from callgate.runtime import Runtime

PREFIX = "/dashboard"
SESSION_COOKIE = "callgate_session"
LOGIN_COOKIE = "callgate_signin"  # double-submit CSRF token of the sign-in and invitation forms
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"

TEMPLATES = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=True,  # every value is HTML-escaped unless a template says otherwise (none does)
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "media-src 'self' blob:; connect-src 'self' ws: wss:; frame-ancestors 'none'; "
        "base-uri 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


class SignInRequired(Exception):
    """No valid session: pages redirect to the sign-in page, scripts get 401."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


class CsrfRefused(Forbidden):
    code, title = "csrf_refused", "The request's CSRF token is missing or wrong"


def secure_cookies(request: Request) -> bool:
    return bool(request.app.state.runtime.settings.env is Env.PRODUCTION)


def set_cookie(request: Request, response: Response, name: str, value: str, *, max_age: int) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=PREFIX,
        httponly=True,
        samesite="lax",
        secure=secure_cookies(request),
    )


def clear_cookie(request: Request, response: Response, name: str) -> None:
    response.delete_cookie(name, path=PREFIX, httponly=True, samesite="lax", secure=secure_cookies(request))


def safe_next(value: str | None) -> str:
    """Where to go after signing in: only a path inside the dashboard (no other host, no scheme,
    no ``//evil``, no backslash tricks); anything else goes to the overview."""
    if not value or "\\" in value or any(ord(c) < 32 for c in value):
        return PREFIX
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or not value.startswith(PREFIX) or value.startswith("//"):
        return PREFIX
    if value != PREFIX and not value.startswith((PREFIX + "/", PREFIX + "?")):
        return PREFIX
    return value


def session_limits(runtime: Runtime) -> users.SessionLimits:
    settings = runtime.settings
    return users.SessionLimits(
        idle=timedelta(seconds=settings.dashboard_session_idle_s),
        absolute=timedelta(seconds=settings.dashboard_session_max_s),
    )


async def current(request: Request, runtime: RuntimeDep) -> SignedIn:
    """The signed-in user (kept on ``request.state.viewer`` for error pages); a request renews the
    session's idle time (written at most once per ``users.TOUCH_EVERY``)."""
    token = request.cookies.get(SESSION_COOKIE)
    viewer = None
    if token:
        now = runtime.clock.now()
        async with runtime.db.read() as s:
            viewer = await users.signed_in(s, token=token, now=now, limits=session_limits(runtime))
        if viewer is not None and now - viewer.last_seen_at >= users.TOUCH_EVERY:
            session_id = viewer.session_id
            await runtime.db.write(lambda s: users.touch_session(s, session_id=session_id, now=now))
    if viewer is None:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise SignInRequired(target)
    request.state.viewer = viewer
    return viewer


Viewer = Annotated[SignedIn, Depends(current)]


def require(role: Role) -> Any:
    """A dependency: the signed-in user, who must hold at least ``role`` (else 403)."""

    async def check(viewer: Viewer) -> SignedIn:
        if not viewer.role.allows(role):
            raise Forbidden(f"this needs the {role.value} role; you are {viewer.role.value}")
        return viewer

    return Depends(check)


def check_csrf(viewer: SignedIn, supplied: str | None) -> None:
    if not supplied or not hmac.compare_digest(supplied.encode(), viewer.csrf_token.encode()):
        raise CsrfRefused("the CSRF token is missing or does not match this session; reload the page")


async def checked_form(request: Request, viewer: SignedIn) -> dict[str, str]:
    """The posted form (or, for scripts, nothing but the header) after the CSRF check."""
    header = request.headers.get(CSRF_HEADER)
    content_type = request.headers.get("content-type", "")
    fields: dict[str, str] = {}
    if content_type.startswith("application/x-www-form-urlencoded"):
        fields = await form_fields(request)
    check_csrf(viewer, header or fields.get(CSRF_FIELD))
    return fields


async def form_fields(request: Request) -> dict[str, str]:
    """A urlencoded form's fields (the dashboard posts no files; the last value of a name wins)."""
    body = (await request.body()).decode("utf-8", errors="replace")
    return dict(parse_qsl(body, keep_blank_values=True, max_num_fields=200))


def back(path: str) -> RedirectResponse:
    """After a change: see the dashboard page at ``path`` (303, so a reload does not post again)."""
    return RedirectResponse(f"{PREFIX}{path}", status_code=303)


def login_path(next_path: str) -> str:
    return f"{PREFIX}/login?next={quote(next_path, safe='')}"


def render(
    request: Request, template: str, *, viewer: SignedIn | None = None, status: int = 200, **context: Any
) -> HTMLResponse:
    html = TEMPLATES.get_template(template).render(
        request=request, viewer=viewer, prefix=PREFIX, path=request.url.path, Role=Role, **context
    )
    return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)
