"""Signing in and out of the dashboard, and accepting an invitation.

Failed sign-ins are counted per address (``LOCKOUT``): past the budget the account is locked until
the window passes, whatever password is tried. Attempts are also limited per client address. Each
sign-in starts a new session (its id never comes from the browser), so a planted cookie is useless.
"""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from callgate.api.dashboard.session import (
    CSRF_FIELD,
    LOGIN_COOKIE,
    PREFIX,
    SESSION_COOKIE,
    CsrfRefused,
    Viewer,
    checked_form,
    clear_cookie,
    form_fields,
    render,
    safe_next,
    session_limits,
    set_cookie,
)
from callgate.api.deps import RuntimeDep
from callgate.auth import passwords
from callgate.domain import users
from callgate.errors import CallgateError, NotFound
from callgate.runtime import Runtime

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

router = APIRouter(prefix=PREFIX, include_in_schema=False)

LOCKOUT = "5/15 minutes"  # failed sign-ins per address before it is locked
PER_CLIENT = "30/minute"  # sign-in attempts per client address


def _form_token(request: Request) -> str:
    return request.cookies.get(LOGIN_COOKIE) or passwords.new_token()


def _with_form_token(request: Request, response: Response, token: str) -> Response:
    set_cookie(request, response, LOGIN_COOKIE, token, max_age=3600)
    return response


def _check_form_token(request: Request, fields: dict[str, str]) -> None:
    cookie, field = request.cookies.get(LOGIN_COOKIE, ""), fields.get(CSRF_FIELD, "")
    if not cookie or not field or not hmac.compare_digest(cookie.encode(), field.encode()):
        raise CsrfRefused("the form's CSRF token is missing or wrong; reload the page")


def _login_page(
    request: Request, *, next_path: str, email: str = "", error: str | None = None, status: int = 200
) -> Response:
    token = _form_token(request)
    page = render(
        request, "login.html", csrf=token, next_path=next_path, email=email, error=error, status=status
    )
    return _with_form_token(request, page, token)


async def _signed_in_response(request: Request, runtime: Runtime, user_email: str, target: str) -> Response:
    now = runtime.clock.now()
    old = request.cookies.get(SESSION_COOKIE)
    limits = session_limits(runtime)

    async def job(s: AsyncSession) -> str:
        if old:  # never carry a session across a sign-in
            found = await users.signed_in(s, token=old, now=now, limits=limits)
            if found is not None:
                await users.end_session(s, session_id=found.session_id)
        user = await users.find_user(s, email=user_email)
        assert user is not None
        token, _ = await users.start_session(s, user=user, now=now, limits=limits)
        return token

    token: str = await runtime.db.write(job)
    response = RedirectResponse(target, status_code=303)
    set_cookie(request, response, SESSION_COOKIE, token, max_age=int(limits.absolute.total_seconds()))
    clear_cookie(request, response, LOGIN_COOKIE)
    return response


@router.get("/login")
async def login_form(request: Request, next: str | None = None) -> Response:
    return _login_page(request, next_path=safe_next(next))


@router.post("/login")
async def login(request: Request, runtime: RuntimeDep) -> Response:
    fields = await form_fields(request)
    _check_form_token(request, fields)
    client = request.client.host if request.client else "unknown"
    await runtime.limiter.hit(PER_CLIENT, "signin", client)
    target = safe_next(fields.get("next"))
    raw_email, password = fields.get("email", ""), fields.get("password", "")
    email = raw_email.strip().lower()
    locked = await runtime.limiter.blocked_for(LOCKOUT, "signin-failures", email)
    if locked is not None:
        minutes = max(1, round(locked / 60))
        return _login_page(
            request,
            next_path=target,
            email=raw_email,
            error=f"Too many failed sign-ins for this address. Try again in about {minutes} minute(s).",
            status=429,
        )
    async with runtime.db.read() as s:
        user = await users.find_user(s, email=email) if email else None
        stored = user.password_hash if user is not None else None
    if not await passwords.verify_password_async(stored, password) or user is None:
        await runtime.limiter.count(LOCKOUT, "signin-failures", email)
        return _login_page(
            request, next_path=target, email=raw_email, error="Wrong email or password.", status=401
        )
    await runtime.limiter.reset(LOCKOUT, "signin-failures", email)
    return await _signed_in_response(request, runtime, user.email, target)


@router.post("/logout")
async def logout(request: Request, viewer: Viewer, runtime: RuntimeDep) -> Response:
    await checked_form(request, viewer)
    await runtime.db.write(lambda s: users.end_session(s, session_id=viewer.session_id))
    response = RedirectResponse(f"{PREFIX}/login", status_code=303)
    clear_cookie(request, response, SESSION_COOKIE)
    return response


@router.post("/logout-everywhere")
async def logout_everywhere(request: Request, viewer: Viewer, runtime: RuntimeDep) -> Response:
    """End every session of this user, on every browser."""
    await checked_form(request, viewer)
    await runtime.db.write(lambda s: users.end_all_sessions(s, user_id=viewer.user_id))
    response = RedirectResponse(f"{PREFIX}/login", status_code=303)
    clear_cookie(request, response, SESSION_COOKIE)
    return response


@router.get("/invite/{token}")
async def invite_form(token: str, request: Request, runtime: RuntimeDep) -> Response:
    now = runtime.clock.now()
    async with runtime.db.read() as s:
        try:
            invite = await users.open_invite(s, token=token, now=now)
        except NotFound as exc:
            return render(request, "message.html", title="Invitation", message=exc.detail, status=404)
    form_token = _form_token(request)
    page = render(request, "invite.html", csrf=form_token, email=invite.email, role=invite.role, error=None)
    return _with_form_token(request, page, form_token)


@router.post("/invite/{token}")
async def accept_invite(token: str, request: Request, runtime: RuntimeDep) -> Response:
    fields = await form_fields(request)
    _check_form_token(request, fields)
    password = fields.get("password", "")
    now = runtime.clock.now()
    try:
        passwords.check_strength(password)
        if password != fields.get("password_again"):
            raise CallgateError("the two passwords differ")
        password_hash = await passwords.hash_password_async(password)
        user = await runtime.db.write(
            lambda s: users.accept_invite(s, token=token, password_hash=password_hash, now=now)
        )
    except CallgateError as exc:
        async with runtime.db.read() as s:
            try:
                invite = await users.open_invite(s, token=token, now=now)
            except NotFound:
                return render(request, "message.html", title="Invitation", message=exc.detail, status=404)
        form_token = _form_token(request)
        page: HTMLResponse = render(
            request,
            "invite.html",
            csrf=form_token,
            email=invite.email,
            role=invite.role,
            error=exc.detail,
            status=422,
        )
        return _with_form_token(request, page, form_token)
    return await _signed_in_response(request, runtime, user.email, PREFIX)
