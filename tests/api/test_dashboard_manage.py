"""Dashboard management in-process: phone numbers and carriers (admins; sealed secrets shown as
``********``), an agent's tools in its form (errors at the field), HTML error pages in the dashboard's
layout (the REST API keeps problem+json), no 500 on bad input, and the idle and absolute session
limits on a movable clock."""

from __future__ import annotations

import html
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request

from callgate.api.dashboard.errors import error_page
from callgate.clock import utcnow
from callgate.domain import agents, calls, carriers
from callgate.domain.tools import HIDDEN
from callgate.domain.users import Role
from callgate.errors import CallgateError
from tests.support.dashboard import (
    HTML,
    client_of,
    make_user,
    page_csrf,
    sign_in,
    sqlite_database_url,  # noqa: F401  (the database_url fixture: SQLite only)
)
from tests.support.live import MovableClock
from tests.support.world import World, make_settings, open_world

SIP = {
    "kind": "sip",
    "name": "Trunk <b>one</b>",
    "outbound_host": "sip.example.com",
    "outbound_port": "5061",
    "outbound_transport": "tcp",
    "outbound_username": "acme",
    "outbound_password": "out-secret-1",
    "inbound_allowed_addresses": "203.0.113.7\n198.51.100.0/24",
    "inbound_username": "",
    "inbound_password": "",
}


def field_error(page: httpx.Response, name: str) -> str:
    """The error shown at a form field (its ``e-NAME`` paragraph), or ''."""
    found = re.search(rf'<p class="error" id="e-{name}">(.*?)</p>', page.text, re.S)
    return html.unescape(found.group(1)) if found else ""


def textarea(page: httpx.Response, name: str) -> str:
    found = re.search(rf'<textarea id="f-{name}" name="{name}"[^>]*>(.*?)</textarea>', page.text, re.S)
    assert found, page.text[:2000]
    return html.unescape(found.group(1))


def is_dashboard_page(page: httpx.Response) -> bool:
    """An HTML page in the dashboard's layout (the navigation of a signed-in user), under its CSP."""
    return (
        page.headers["content-type"].startswith("text/html")
        and 'aria-label="Dashboard"' in page.text
        and "default-src 'self'" in page.headers["content-security-policy"]
    )


@asynccontextmanager
async def signed_in(
    world: World, email: str, role: Role, team_id: str
) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    """A browser signed in as a new user of ``team_id``, and its page's CSRF token."""
    await make_user(world.runtime, team_id, email, role)
    async with client_of(world) as client:
        await sign_in(client, email)
        yield client, await page_csrf(client)


async def test_admins_manage_numbers_and_carriers_with_sealed_secrets(world: World) -> None:
    team = await world.team("acme")
    other = await world.team("other")
    async with (
        signed_in(world, "a@example.com", Role.ADMIN, team.id) as (admin, token),
        signed_in(world, "m@example.com", Role.MEMBER, team.id) as (member, member_token),
    ):
        # A SIP trunk: created, its password sealed and shown as ******** only.
        r = await admin.post("/dashboard/carriers", data={**SIP, "csrf_token": token}, headers=HTML)
        assert r.status_code == 303, r.text
        carrier_path = r.headers["location"].split("?")[0]
        carrier_id = carrier_path.rsplit("/", 1)[1]
        page = await admin.get(carrier_path, headers=HTML)
        assert page.status_code == 200
        assert f'name="outbound_password" type="password" value="{HIDDEN}"' in page.text
        assert "out-secret-1" not in page.text and "Trunk &lt;b&gt;one&lt;/b&gt;" in page.text
        listing = await admin.get("/dashboard/numbers", headers=HTML)
        assert f"outbound password {HIDDEN}" in listing.text and "out-secret-1" not in listing.text
        rest = (await world.client.get(f"/v1/carriers/{carrier_id}", headers=team.auth())).json()
        assert rest["outbound"] == {
            "host": "sip.example.com",
            "port": 5061,
            "transport": "tcp",
            "username": "acme",
            "from_domain": None,
            "password_set": True,
        }
        assert rest["inbound"]["allowed_addresses"] == ["203.0.113.7/32", "198.51.100.0/24"]

        async def stored_password() -> str | None:
            async with world.runtime.db.read() as s:
                found = await carriers.carrier_secrets(s, team_id=team.id, carrier_id=carrier_id)
            return found.outbound_password

        # Edited as shown (******** posted back): the password is kept; emptied: it is removed.
        edit = {**SIP, "name": "Trunk two", "outbound_password": HIDDEN, "csrf_token": token}
        r = await admin.post(carrier_path, data=edit, headers=HTML)
        assert r.status_code == 303 and await stored_password() == "out-secret-1"
        r = await admin.post(carrier_path, data={**edit, "outbound_password": ""}, headers=HTML)
        assert r.status_code == 303 and await stored_password() is None
        # Bad input: 422, the page again with the error at the field, nothing saved.
        r = await admin.post(carrier_path, data={**edit, "outbound_port": "99999"}, headers=HTML)
        assert r.status_code == 422 and is_dashboard_page(r)
        assert "65535" in field_error(r, "outbound_port")
        assert 'aria-invalid="true" aria-describedby="e-outbound_port"' in r.text
        r = await admin.post(
            carrier_path, data={**edit, "inbound_allowed_addresses": "10.0.0.300"}, headers=HTML
        )
        assert r.status_code == 422
        assert "'10.0.0.300' is not an IP address" in field_error(r, "inbound_allowed_addresses")
        assert await stored_password() is None
        r = await admin.post(
            "/dashboard/carriers",
            data={
                "kind": "twilio",
                "name": "tw",
                "account_sid": "AC123",
                "auth_token": "t",
                "csrf_token": token,
            },
            headers=HTML,
        )
        assert r.status_code == 422 and "pattern" in field_error(r, "account_sid")
        r = await admin.post(
            "/dashboard/carriers", data={"kind": "sip", "name": "empty", "csrf_token": token}, headers=HTML
        )
        assert r.status_code == 422 and "needs outbound, inbound or both" in r.text

        # Phone numbers: created on the carrier, assigned to an agent and to none, deleted.
        number = {"number": "+14155550123", "label": "Front desk", "agent_id": team.agent_id}
        r = await admin.post(
            "/dashboard/numbers", data={**number, "carrier_id": carrier_id, "csrf_token": token}, headers=HTML
        )
        assert r.status_code == 303, r.text
        listed = (await world.client.get("/v1/phone-numbers", headers=team.auth())).json()["data"]
        assert [(n["number"], n["agent_id"], n["carrier_id"]) for n in listed] == [
            ("+14155550123", team.agent_id, carrier_id)
        ]
        number_id = listed[0]["id"]
        r = await admin.post("/dashboard/numbers", data={**number, "csrf_token": token}, headers=HTML)
        assert r.status_code == 409 and "already registered" in field_error(r, "number")
        r = await admin.post(
            "/dashboard/numbers", data={**number, "number": "555-0123", "csrf_token": token}, headers=HTML
        )
        assert r.status_code == 422 and "E.164" in field_error(r, "number")
        r = await admin.post(
            f"/dashboard/numbers/{number_id}", data={"agent_id": "", "csrf_token": token}, headers=HTML
        )
        assert r.status_code == 303
        got = (await world.client.get(f"/v1/phone-numbers/{number_id}", headers=team.auth())).json()
        assert got["agent_id"] is None
        # Another team's agent, or another team's number: 404, a page in the layout.
        for path, data in (
            (f"/dashboard/numbers/{number_id}", {"agent_id": other.agent_id}),
            ("/dashboard/carriers/" + carrier_id.replace("_", "_x"), {}),
        ):
            r = await admin.post(path, data={**data, "csrf_token": token}, headers=HTML)
            assert r.status_code == 404 and is_dashboard_page(r) and "Not found" in r.text, path

        # Members read but change nothing: a 403 page for each change; no CSRF token: 403 too.
        assert (await member.get(carrier_path, headers=HTML)).status_code == 200
        for path in (
            "/dashboard/carriers",
            carrier_path,
            f"{carrier_path}/delete",
            "/dashboard/numbers",
            f"/dashboard/numbers/{number_id}",
            f"/dashboard/numbers/{number_id}/delete",
        ):
            r = await member.post(path, data={**SIP, **number, "csrf_token": member_token}, headers=HTML)
            assert r.status_code == 403 and is_dashboard_page(r) and "the admin role" in r.text, path
        r = await admin.post(f"/dashboard/numbers/{number_id}/delete", data={}, headers=HTML)
        assert r.status_code == 403 and "CSRF" in r.text

        r = await admin.post(f"/dashboard/numbers/{number_id}/delete", data={"csrf_token": token})
        assert r.status_code == 303
        r = await admin.post(f"{carrier_path}/delete", data={"csrf_token": token})
        assert r.status_code == 303
        assert (await world.client.get("/v1/phone-numbers", headers=team.auth())).json()["data"] == []
        assert (await world.client.get("/v1/carriers", headers=team.auth())).json()["data"] == []


HTTP_TOOL = {
    "type": "http",
    "name": "lookup",
    "description": "Find a booking",
    "url": "https://tools.example.com/lookup",
    "headers": {"Authorization": "Bearer tool-secret"},
}


async def test_an_agent_saved_with_former_whisper_settings_is_shown_and_saved_as_run(world: World) -> None:
    """``model_path`` and the other former process settings of an agent stored by an older version are
    ignored when read: the form leaves them out, so saving it as shown is accepted."""
    team = await world.team("acme")
    r = await world.client.post("/v1/agents", json={"name": "old", "prompt": "Help."}, headers=team.auth())
    assert r.status_code == 201, r.text
    agent_id = r.json()["id"]
    former = {"engine": "whisper", "model_path": "/srv/models", "cpu_threads": 8, "beam_size": 2}

    async def store_the_old_way(s: AsyncSession) -> None:
        agent = await agents.get_agent(s, team_id=team.id, agent_id=agent_id)
        agent.stt = former

    await world.runtime.db.write(store_the_old_way)
    async with signed_in(world, "a@example.com", Role.ADMIN, team.id) as (admin, token):
        page = await admin.get(f"/dashboard/agents/{agent_id}", headers=HTML)
        shown = textarea(page, "stt")
        assert "/srv/models" not in page.text and "cpu_threads" not in shown, shown
        form = {
            "name": "old", "kind": "prompt", "prompt": "Help.", "max_duration_s": "600",
            "silence_timeout_s": "30", "stt": shown, "csrf_token": token,
        }  # fmt: skip
        r = await admin.post(f"/dashboard/agents/{agent_id}", data=form, headers=HTML)
        assert r.status_code == 303, r.text
    async with world.runtime.db.read() as s:
        assert (await agents.get_agent(s, team_id=team.id, agent_id=agent_id)).stt == {
            "engine": "whisper",
            "beam_size": 2,
        }


async def test_agent_tools_are_edited_in_the_form(world: World) -> None:
    team = await world.team("acme")
    body = {"name": "booker", "prompt": "Book things.", "language": "de-DE", "tools": [HTTP_TOOL]}
    r = await world.client.post("/v1/agents", json=body, headers=team.auth())
    assert r.status_code == 201, r.text
    agent_id = r.json()["id"]

    async def stored_tools() -> list[dict[str, object]]:
        async with world.runtime.db.read() as s:
            return list((await agents.get_agent(s, team_id=team.id, agent_id=agent_id)).tools)

    sealed = await stored_tools()
    async with signed_in(world, "a@example.com", Role.ADMIN, team.id) as (admin, token):
        page = await admin.get(f"/dashboard/agents/{agent_id}", headers=HTML)
        shown = textarea(page, "tools")
        assert f'"Authorization": "{HIDDEN}"' in shown and "tool-secret" not in page.text
        form = {
            "name": "booker",
            "kind": "prompt",
            "prompt": "Book things.",
            "language": "de-DE",
            "max_duration_s": "120",
            "silence_timeout_s": "30",
            "tools": shown,
            "csrf_token": token,
        }
        # Saved as shown plus a built-in tool: the sealed header is kept as it was.
        with_end = shown.rstrip().removesuffix("]") + ', {"type": "end_call"}]'
        r = await admin.post(f"/dashboard/agents/{agent_id}", data={**form, "tools": with_end}, headers=HTML)
        assert r.status_code == 303, r.text
        tools = await stored_tools()
        assert tools == [sealed[0], {"type": "end_call"}]
        rest = (await world.client.get(f"/v1/agents/{agent_id}", headers=team.auth())).json()
        assert rest["max_duration_s"] == 120 and rest["language"] == "de-DE"

        # Errors at the tools field, located inside it; nothing saved.
        cases = {
            '[{"type": "http", "name": "x", "description": "d", "url": "not a url"}]': "tools[0].url",
            '[{"type": "wait"}, {"type": "wait"}]': "two tools are named 'wait'",
            '[{"type": "teleport"}]': "tools[0]",
            '{"type": "wait"}': "valid list",
            "[{": "not valid JSON",
            '[{"type": "http", "name": "new", "description": "d", "url": "https://x.example",'
            f' "headers": {{"X-Key": "{HIDDEN}"}}}}]': "no stored value to keep",
        }
        for tools_text, expected in cases.items():
            r = await admin.post(
                f"/dashboard/agents/{agent_id}", data={**form, "tools": tools_text}, headers=HTML
            )
            assert r.status_code == 422, (tools_text, r.text[:300])
            assert expected in field_error(r, "tools"), (tools_text, field_error(r, "tools"))
            assert textarea(r, "tools") == tools_text  # what was typed comes back to be fixed
        r = await admin.post(
            f"/dashboard/agents/{agent_id}", data={**form, "max_duration_s": "ten"}, headers=HTML
        )
        assert r.status_code == 422 and "integer" in field_error(r, "max_duration_s")
        assert await stored_tools() == tools


async def test_errors_are_pages_in_the_dashboard_and_problems_in_the_api(world: World) -> None:
    team = await world.team("acme")
    other = await world.team("other")
    r = await world.client.post("/v1/web-calls", json={"agent_id": other.agent_id}, headers=other.auth())
    foreign_call = r.json()["id"]
    async with signed_in(world, "o@example.com", Role.OWNER, team.id) as (admin, token):
        for path in (
            f"/dashboard/calls/{foreign_call}",
            f"/dashboard/agents/{other.agent_id}",
            "/dashboard/carriers/carrier_nope",
            "/dashboard/no/such/page",
        ):
            r = await admin.get(path, headers=HTML)
            assert r.status_code == 404 and is_dashboard_page(r), path
            assert "Not found" in r.text and 'aria-current="page"' not in r.text
        r = await admin.get("/dashboard/", headers=HTML)
        assert r.status_code == 307 and r.headers["location"] == "/dashboard"
        # The same from a script: problem+json; the REST API: always problem+json.
        r = await admin.get(f"/dashboard/calls/{foreign_call}")
        assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"
        r = await world.client.get(f"/v1/calls/{foreign_call}", headers={**team.auth(), **HTML})
        assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"
        # Bad input is a 4xx page, never a 500.
        for method, path, data in (
            ("GET", "/dashboard/calls?page=zero", None),
            ("GET", "/dashboard/calls?page=0&from=yesterday&to=%FF&status=%00", None),
            ("POST", "/dashboard/users/invite", {"email": "not an address", "role": "member"}),
            ("POST", "/dashboard/agents", {"name": "", "kind": "flow", "flow": "[]"}),
            ("POST", "/dashboard/agents", {"name": "x" * 300, "prompt": "\x00"}),
            ("POST", "/dashboard/webhooks", {"url": "ftp://x"}),
            ("POST", "/dashboard/numbers", {"number": "+1" + "9" * 40, "label": "x" * 500}),
            ("POST", "/dashboard/carriers", {"kind": "pstn", "name": "x"}),
            ("POST", "/dashboard/carriers", {"kind": "sip", "outbound_host": "a b", "name": "x"}),
        ):
            fields = None if data is None else {**data, "csrf_token": token}
            r = await admin.request(method, path, data=fields, headers=HTML)
            assert 400 <= r.status_code < 500 and r.headers["content-type"].startswith("text/html"), (
                path,
                data,
                r.status_code,
                r.text[:300],
            )
        r = await admin.post(
            "/dashboard/keys", content=b"\xff\xfe", headers={**HTML, "content-type": "application/json"}
        )
        assert r.status_code == 403 and is_dashboard_page(r) and "CSRF" in r.text
    # Signed out, an unknown dashboard path asks for the password first (nothing probed anonymously).
    r = await world.client.get("/dashboard/no/such/page", headers=HTML)
    assert r.status_code == 303 and r.headers["location"].startswith("/dashboard/login?next=")


def test_a_fault_is_a_page_that_tells_nothing_of_its_cause() -> None:
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/dashboard/calls",
        "headers": [(b"accept", b"text/html")],
    }
    scope |= {"query_string": b"", "state": {}}
    page = error_page(Request(scope), CallgateError("database password is hunter2"))
    assert page.status_code == 500 and page.headers["content-type"].startswith("text/html")
    assert b"Something went wrong" in page.body and b"hunter2" not in page.body


async def test_sessions_end_after_idle_time_and_at_their_absolute_limit(
    tmp_path: Path,
    database_url: str,
) -> None:
    clock = MovableClock()
    async with open_world(make_settings(tmp_path, database_url), clock=clock) as world:
        team = await world.team("acme")
        await make_user(world.runtime, team.id, "m@example.com", Role.MEMBER)
        async with client_of(world) as c:

            async def at(hours: float) -> int:
                clock.ahead_s = hours * 3600
                return (await c.get("/dashboard/live.json")).status_code

            r = await sign_in(c, "m@example.com")
            cookie = next(h for h in r.headers.get_list("set-cookie") if h.startswith("callgate_session="))
            assert "Max-Age=86400" in cookie  # the absolute limit: 24 h by default
            # Each request renews the 8 h idle time...
            assert [await at(h) for h in (7.9, 15.8, 23.7)] == [200, 200, 200]
            # ...up to the absolute limit, however active the session is.
            assert await at(24.01) == 401
            await sign_in(c, "m@example.com")
            assert await at(24.01 + 7.99) == 200
            assert await at(24.01 + 7.99 + 8.01) == 401  # idle for just over 8 h
            # A form posted after that: sign in, then back to the page the form was on.
            r = await c.post(
                "/dashboard/numbers",
                data={"number": "+14155550123"},
                headers={**HTML, "referer": "http://testserver/dashboard/numbers?saved=1"},
            )
            assert r.status_code == 303
            assert r.headers["location"] == "/dashboard/login?next=%2Fdashboard%2Fnumbers%3Fsaved%3D1"
        # Both limits are settings.
        settings = make_settings(
            tmp_path, database_url, dashboard_session_idle_s=600, dashboard_session_max_s=3600
        )
    async with open_world(settings, clock=clock) as world, client_of(world) as c:
        clock.ahead_s = 0
        await sign_in(c, "m@example.com")
        assert (await c.get("/dashboard/live.json")).status_code == 200
        clock.ahead_s = 601
        assert (await c.get("/dashboard/live.json")).status_code == 401


async def test_a_call_page_says_why_the_agent_stopped_or_went_on(world: World) -> None:
    team = await world.team("acme")
    r = await world.client.post("/v1/web-calls", json={"agent_id": team.agent_id}, headers=team.auth())
    call_id = r.json()["id"]
    barge_ins = [
        {"outcome": "resumed", "reason": "backchannel", "held_ms": 212.4, "words": "<b>uh-huh</b>"},
        {"outcome": "interrupted", "reason": "continued", "held_ms": 301.0, "words": "for my daughter"},
    ]

    async def job(s: AsyncSession) -> None:
        at = utcnow()
        fields = {"role": "agent", "text": "What day", "interrupted": True, "started_at": at, "ended_at": at}
        await calls.add_turn(s, call_id=call_id, fields=fields | {"barge_ins": barge_ins})
        # A reply cut off before the caller heard any of it.
        await calls.add_turn(s, call_id=call_id, fields=fields | {"text": "", "barge_ins": barge_ins[1:]})

    await world.runtime.db.write(job)
    async with signed_in(world, "m@example.com", Role.MEMBER, team.id) as (member, _token):
        r = await member.get(f"/dashboard/calls/{call_id}", headers=HTML)
    assert r.status_code == 200
    notes = [
        html.unescape(re.sub(r"\s+", " ", n)).strip()
        for n in re.findall(r'<ul class="barge-ins">(.*?)</ul>', r.text, re.S)
    ]
    assert notes and "held, then went on: a backchannel “<b>uh-huh</b>” (212 ms held)" in notes[0]
    assert "cut off: the caller went on with the turn this answered" in notes[0]
    assert "<b>uh-huh</b>" not in r.text  # the caller's words are escaped
    turns = re.findall(r'<li class="turn agent".*?</li>', r.text, re.S)
    assert len(turns) == 2 and len(notes) == 2, r.text
    assert "(interrupted)" in turns[0] and "heard any of it" not in turns[0]
    assert "(cut off before the caller heard any of it)" in turns[1] and "(interrupted)" not in turns[1]
