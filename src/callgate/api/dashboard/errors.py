"""The dashboard's errors as pages. A browser that opened a page or posted a form (it accepts
``text/html``) gets the error in the dashboard's layout with the error's status: another team's
object is a 404 page, a role's limit a 403 page, a fault a 500 page that tells nothing of its cause.
Scripts (``fetch`` from the dashboard's own pages) keep ``application/problem+json``, as the REST API.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from callgate.api.dashboard.session import PREFIX, Viewer, render
from callgate.api.problems import problem_response
from callgate.errors import CallgateError, NotFound

router = APIRouter(prefix=PREFIX, include_in_schema=False)
"""Included after every other dashboard router: its catch-all answers the paths none of them has."""

TITLES = {
    400: "Bad request",
    403: "Not allowed",
    404: "Not found",
    405: "Not allowed",
    409: "Conflict",
    413: "Too large",
    422: "Not valid",
    429: "Too many requests",
}
KEPT_HEADERS = ("retry-after", "ratelimit-limit", "ratelimit-remaining", "ratelimit-reset")


def wants_page(request: Request) -> bool:
    return "text/html" in request.headers.get("accept", "")


def error_page(request: Request, error: CallgateError) -> Response:
    """``error`` as the dashboard shows it (registered for ``/dashboard`` in ``problems``)."""
    problem = problem_response(request, error)
    if not wants_page(request):
        return problem
    if error.status >= 500:
        title, message, details = "Something went wrong", "The server could not do this. Try again later.", []
    else:
        title, message = TITLES.get(error.status, "Error"), error.detail
        details = [
            f"{e['field']}: {e['message']}" if e.get("field") else str(e.get("message") or e.get("msg"))
            for e in error.errors or []
        ]
    page = render(
        request,
        "message.html",
        viewer=getattr(request.state, "viewer", None),
        status=error.status,
        title=title,
        message=message,
        details=details,
    )
    for name in KEPT_HEADERS:
        if name in problem.headers:
            page.headers[name] = problem.headers[name]
    return page


@router.get("/{rest:path}")
async def no_such_page(rest: str, viewer: Viewer) -> Response:
    """A path the dashboard does not have: signed-in users get the 404 page (others sign in first,
    so the dashboard's paths are not probed anonymously); ``/dashboard/`` is the overview."""
    if not rest:
        return RedirectResponse(PREFIX, status_code=307)
    raise NotFound("there is no such page in the dashboard")
