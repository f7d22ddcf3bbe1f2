"""Dashboard helpers: users made through the domain, and signing in with a plain HTTP client."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from callgate.auth.passwords import hash_password
from callgate.clock import utcnow
from callgate.domain.users import Role, create_user
from callgate.runtime import Runtime
from tests.support.world import World

PASSWORD = "correct horse battery"
HTML = {"accept": "text/html"}
"""What a browser sends when it opens a page or posts a form."""


@pytest.fixture(name="database_url")
def sqlite_database_url(tmp_path: Path, sqlite_template: Path) -> str:
    """SQLite only: sessions and roles are plain rows; the migrations test covers PostgreSQL.
    (Import it into a test module to use it there.)"""
    path = tmp_path / "callgate.db"
    path.write_bytes(sqlite_template.read_bytes())
    return f"sqlite+aiosqlite:///{path}"


def client_of(world: World, base_url: str = "http://testserver") -> httpx.AsyncClient:
    """Another in-process client on the world's app, with its own cookies (one browser)."""
    return httpx.AsyncClient(transport=world.client._transport, base_url=base_url)


async def make_user(runtime: Runtime, team_id: str, email: str, role: Role, password: str = PASSWORD) -> str:
    password_hash = hash_password(password)
    now = utcnow()
    user = await runtime.db.write(
        lambda s: create_user(
            s, team_id=team_id, email=email, role=role, password_hash=password_hash, now=now
        )
    )
    return user.id


def form_token(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, html[:500]
    return found.group(1)


async def sign_in(
    client: httpx.AsyncClient, email: str, password: str = PASSWORD, *, next_path: str = "/dashboard"
) -> httpx.Response:
    page = await client.get("/dashboard/login")
    return await client.post(
        "/dashboard/login",
        data={"email": email, "password": password, "csrf_token": form_token(page.text), "next": next_path},
    )


async def page_csrf(client: httpx.AsyncClient) -> str:
    r = await client.get("/dashboard", headers={"accept": "text/html"})
    assert r.status_code == 200, r.text[:300]
    found = re.search(r'<meta name="csrf-token" content="([^"]+)"', r.text)
    assert found
    return found.group(1)
