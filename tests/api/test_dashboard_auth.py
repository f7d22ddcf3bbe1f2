"""Dashboard sign-in and roles, in-process: wrong password, lock-out, CSRF, session rotation, cookie
flags, open redirects, sign-out everywhere, and role limits enforced on the server (403)."""

from __future__ import annotations

import pytest

from callgate.domain.users import Role
from tests.support.dashboard import (
    PASSWORD,
    client_of,
    form_token,
    make_user,
    page_csrf,
    sign_in,
    sqlite_database_url,  # noqa: F401  (the database_url fixture: SQLite only)
)
from tests.support.world import World


async def test_sign_in_rotates_the_session_and_sets_safe_cookies(world: World) -> None:
    team = await world.team("acme")
    await make_user(world.runtime, team.id, "owner@example.com", Role.OWNER)
    async with client_of(world) as c:
        c.cookies.set(
            "callgate_session", "planted-by-an-attacker", domain="testserver.local", path="/dashboard"
        )
        r = await sign_in(c, "Owner@Example.com", next_path="/dashboard/calls?status=ended")
        assert r.status_code == 303 and r.headers["location"] == "/dashboard/calls?status=ended"
        cookie = next(h for h in r.headers.get_list("set-cookie") if h.startswith("callgate_session="))
        assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/dashboard" in cookie
        assert "Secure" not in cookie  # development; production adds it (below)
        first = c.cookies.get("callgate_session", path="/dashboard")
        assert first and first != "planted-by-an-attacker"
        await sign_in(c, "owner@example.com")
        assert c.cookies.get("callgate_session", path="/dashboard") != first
        # The first session ended with the second sign-in.
        async with client_of(world) as other:
            other.cookies.set("callgate_session", first, domain="testserver.local", path="/dashboard")
            assert (await other.get("/dashboard/live.json")).status_code == 401


async def test_wrong_password_then_lock_out(world: World) -> None:
    team = await world.team("acme")
    await make_user(world.runtime, team.id, "m@example.com", Role.MEMBER)
    async with client_of(world) as c:
        r = await sign_in(c, "m@example.com", "wrong password!")
        assert r.status_code == 401 and "Wrong email or password" in r.text
        assert (await sign_in(c, "nobody@example.com", "whatever1234")).status_code == 401
        for _ in range(4):
            await sign_in(c, "m@example.com", "wrong password!")
        locked = await sign_in(c, "m@example.com", PASSWORD)  # the right password, but locked
        assert locked.status_code == 429 and "Too many failed sign-ins" in locked.text
        assert c.cookies.get("callgate_session", path="/dashboard") is None


async def test_sign_in_form_needs_its_csrf_token(world: World) -> None:
    team = await world.team("acme")
    await make_user(world.runtime, team.id, "m@example.com", Role.MEMBER)
    async with client_of(world) as c:
        await c.get("/dashboard/login")
        r = await c.post("/dashboard/login", data={"email": "m@example.com", "password": PASSWORD})
        assert r.status_code == 403
        r = await c.post(
            "/dashboard/login", data={"email": "m@example.com", "password": PASSWORD, "csrf_token": "forged"}
        )
        assert r.status_code == 403


@pytest.mark.parametrize(
    "target",
    [
        "https://evil.example/x",
        "//evil.example/x",
        "/\\evil.example",
        "/dashboardevil",
        "javascript:alert(1)",
    ],
)
async def test_no_open_redirect_after_sign_in(world: World, target: str) -> None:
    team = await world.team("acme")
    await make_user(world.runtime, team.id, "m@example.com", Role.MEMBER)
    async with client_of(world) as c:
        r = await sign_in(c, "m@example.com", next_path=target)
        assert r.status_code == 303 and r.headers["location"] == "/dashboard"


async def test_state_changes_need_the_session_csrf_token(world: World) -> None:
    team = await world.team("acme")
    await make_user(world.runtime, team.id, "o@example.com", Role.OWNER)
    async with client_of(world) as c:
        await sign_in(c, "o@example.com")
        token = await page_csrf(c)
        r = await c.post("/dashboard/keys", data={"type": "secret", "name": "x"})
        assert r.status_code == 403 and r.json()["code"] == "csrf_refused"
        r = await c.post(f"/dashboard/agents/{team.agent_id}/try", json={"mode": "text"})
        assert r.status_code == 403
        r = await c.post("/dashboard/keys", data={"type": "secret", "name": "x", "csrf_token": token})
        assert (r.status_code == 201 and "cg_sk_" in r.text) or "never shown again" in r.text


async def test_roles_are_enforced_on_the_server(world: World) -> None:
    team = await world.team("acme")
    await make_user(world.runtime, team.id, "m@example.com", Role.MEMBER)
    await make_user(world.runtime, team.id, "a@example.com", Role.ADMIN)
    async with client_of(world) as member, client_of(world) as admin:
        await sign_in(member, "m@example.com")
        token = await page_csrf(member)
        for path, data in (
            ("/dashboard/agents", {"name": "x", "kind": "prompt", "prompt": "hi"}),
            ("/dashboard/keys", {"type": "secret"}),
            ("/dashboard/users/invite", {"email": "x@example.com", "role": "owner"}),
            ("/dashboard/webhooks", {"url": "https://example.com/hook"}),
        ):
            r = await member.post(path, data={**data, "csrf_token": token})
            assert r.status_code == 403, (path, r.text)
        # Members read, and try calls.
        assert (await member.get("/dashboard/calls", headers={"accept": "text/html"})).status_code == 200
        r = await member.post(
            f"/dashboard/agents/{team.agent_id}/try", json={"mode": "text"}, headers={"x-csrf-token": token}
        )
        assert r.status_code == 201 and r.json()["websocket_url"]
        await sign_in(admin, "a@example.com")
        admin_token = await page_csrf(admin)
        r = await admin.post("/dashboard/keys", data={"type": "secret", "csrf_token": admin_token})
        assert r.status_code == 403
        r = await admin.post(
            "/dashboard/agents",
            data={"name": "made by admin", "kind": "prompt", "prompt": "hello", "csrf_token": admin_token},
        )
        assert r.status_code == 303


async def test_sign_out_everywhere_ends_every_session(world: World) -> None:
    team = await world.team("acme")
    await make_user(world.runtime, team.id, "m@example.com", Role.MEMBER)
    async with client_of(world) as one, client_of(world) as two:
        await sign_in(one, "m@example.com")
        await sign_in(two, "m@example.com")
        token = await page_csrf(one)
        r = await one.post("/dashboard/logout-everywhere", data={"csrf_token": token})
        assert r.status_code == 303
        assert (await two.get("/dashboard/live.json")).status_code == 401
        page = await two.get("/dashboard/calls", headers={"accept": "text/html"})
        assert page.status_code == 303 and page.headers["location"].startswith("/dashboard/login?next=")


async def test_invitation_link_creates_a_user(world: World) -> None:
    team = await world.team("acme")
    await make_user(world.runtime, team.id, "o@example.com", Role.OWNER)
    async with client_of(world) as owner, client_of(world) as guest:
        await sign_in(owner, "o@example.com")
        r = await owner.post(
            "/dashboard/users/invite",
            data={"email": "new@example.com", "role": "admin", "csrf_token": await page_csrf(owner)},
        )
        assert r.status_code == 201
        link = r.text.split('id="invite-link">')[1].split("<")[0]
        path = link.removeprefix("http://testserver")
        form = await guest.get(path)
        r = await guest.post(
            path, data={"password": PASSWORD, "password_again": PASSWORD, "csrf_token": form_token(form.text)}
        )
        assert r.status_code == 303
        page = await guest.get("/dashboard/users", headers={"accept": "text/html"})
        assert "new@example.com (admin)" in page.text
        assert (await guest.get(path)).status_code == 404  # used


async def test_production_cookies_are_secure(tmp_path, sqlite_template) -> None:  # type: ignore[no-untyped-def]
    from tests.support.world import make_settings, open_world

    path = tmp_path / "p.db"
    path.write_bytes(sqlite_template.read_bytes())
    settings = make_settings(tmp_path, f"sqlite+aiosqlite:///{path}", env="production")
    async with open_world(settings) as world:
        team = await world.team("acme")
        await make_user(world.runtime, team.id, "o@example.com", Role.OWNER)
        async with client_of(world, "https://testserver") as c:  # Secure cookies go back over https only
            r = await sign_in(c, "o@example.com")
            assert r.status_code == 303, r.text
            cookie = next(h for h in r.headers.get_list("set-cookie") if h.startswith("callgate_session="))
            assert "Secure" in cookie and "HttpOnly" in cookie
