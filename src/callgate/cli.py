"""The ``callgate`` command."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import click
import yaml
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from callgate.clock import utcnow
from callgate.config import Settings
from callgate.errors import CallgateError
from callgate.log import configure_logging
from callgate.metrics import MULTIPROC_DIR
from callgate.store.db import Database
from callgate.store.migrate import upgrade

T = TypeVar("T")


def _settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        raise click.ClickException(f"invalid configuration: {exc}") from exc


async def _with_db(settings: Settings, job: Callable[[AsyncSession], Awaitable[T]]) -> T:
    from callgate.store import sealing

    # Secrets written here (carriers') are sealed under the same key the server uses.
    for previous in settings.previous_secret_keys:
        sealing.install(previous.get_secret_value())
    sealing.install(settings.signing_key)
    await upgrade(settings.resolved_database_url)
    db = Database(settings.resolved_database_url)
    await db.start()
    try:
        return await db.write(job)
    finally:
        await db.close()


def _run(settings: Settings, job: Callable[[AsyncSession], Awaitable[T]]) -> T:
    try:
        return asyncio.run(_with_db(settings, job))
    except CallgateError as exc:
        raise click.ClickException(f"{exc.code}: {exc.detail}") from exc


@click.group()
@click.version_option(package_name="callgate")
def main() -> None:
    """callgate: self-hosted web calls for voice AI agents."""


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--workers", default=1, show_default=True, type=int, help="Worker processes.")
def serve(host: str, port: int, workers: int) -> None:
    """Apply migrations, seed an empty database, and serve."""
    from callgate.domain.bootstrap import bootstrap
    from callgate.server import ConnectionLimits, ServerConfig
    from callgate.server import run as run_server

    settings = _settings()
    configure_logging(level=settings.log_level, json_lines=settings.log_json)
    settings.signing_key  # noqa: B018 - create the development key file before workers fork
    seeded = _run(
        settings,
        lambda s: bootstrap(s, now=utcnow(), max_live_calls=settings.default_team_max_live_calls),
    )
    base = settings.public_url or f"http://{host}:{port}"
    click.echo(f"callgate is starting on {base}")
    click.echo(f"  demo page:  {base}/")
    click.echo(f"  API docs:   {base}/docs")
    if seeded.secret_key:
        click.echo("  a development secret key was created (shown only now):")
        click.echo(f"    {seeded.secret_key}")
    if seeded.demo_agent_id:
        click.echo(f"  demo agent: {seeded.demo_agent_id}")
    if workers > 1:  # one node of several processes: they share its admission limit and its metrics
        os.environ["CALLGATE_WORKERS"] = str(workers)
        os.environ.setdefault(MULTIPROC_DIR, tempfile.mkdtemp(prefix="callgate-metrics-"))
    config = ServerConfig(
        "callgate.app:create_app",
        limits=ConnectionLimits.from_settings(settings),
        logging_config=(settings.log_level, settings.log_json),
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_config=None,
        access_log=False,
        proxy_headers=True,
        ws_max_size=1_048_576,
    )
    if not run_server(config):
        sys.exit(3)  # uvicorn's STARTUP_FAILURE


@main.group()
def db() -> None:
    """Database maintenance."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Apply Alembic migrations up to head."""
    settings = _settings()
    asyncio.run(upgrade(settings.resolved_database_url))
    click.echo("database is at the latest schema")


@main.group()
def keys() -> None:
    """API keys."""


@keys.command("create")
@click.option("--type", "key_type", type=click.Choice(["secret", "publishable", "shared"]), required=True)
@click.option("--team", default="default", show_default=True, help="Team name; created if missing.")
@click.option("--name", default=None, help="A label for the key.")
@click.option("--origin", "origins", multiple=True, help="Allowed origin (publishable keys).")
@click.option("--agent", "agent_ids", multiple=True, help="Allowed agent id (publishable/shared keys).")
@click.option("--rate-limit", default=None, help='e.g. "100/second" (default depends on the type).')
@click.option("--token-ttl", type=int, default=None, help="Join deadline of call tokens, seconds.")
def keys_create(
    key_type: str,
    team: str,
    name: str | None,
    origins: tuple[str, ...],
    agent_ids: tuple[str, ...],
    rate_limit: str | None,
    token_ttl: int | None,
) -> None:
    """Create a key. The key is printed once, on the last line; only its hash is stored."""
    from callgate.auth.keys import KeyType
    from callgate.domain.agents import get_agent
    from callgate.domain.keys import create_key, get_or_create_team

    settings = _settings()

    async def job(session: AsyncSession) -> tuple[str, str]:
        now = utcnow()
        row = await get_or_create_team(
            session, name=team, now=now, max_live_calls=settings.default_team_max_live_calls
        )
        for agent_id in agent_ids:
            await get_agent(session, team_id=row.id, agent_id=agent_id)
        key, plaintext = await create_key(
            session,
            team_id=row.id,
            key_type=KeyType(key_type),
            now=now,
            name=name,
            allowed_origins=list(origins),
            agent_ids=list(agent_ids),
            rate_limit=rate_limit,
            token_ttl_s=token_ttl,
        )
        return key.id, plaintext

    try:
        key_id, plaintext = _run(settings, job)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"created {key_type} key {key_id} for team {team!r}")
    click.echo(plaintext)


@main.group()
def users() -> None:
    """Dashboard users (people who sign in at /dashboard; the REST API stays key-based)."""


@users.command("create")
@click.option("--email", required=True)
@click.option("--team", default="default", show_default=True, help="Team name; created if missing.")
@click.option("--role", type=click.Choice(["owner", "admin", "member"]), default="member", show_default=True)
@click.password_option(help="Prompted for (and confirmed) when not given; reads stdin when piped.")
def users_create(email: str, team: str, role: str, password: str) -> None:
    """Create a user who signs in to the dashboard with this address and password."""
    from callgate.auth.passwords import check_strength, hash_password
    from callgate.domain.keys import get_or_create_team
    from callgate.domain.users import Role, create_user

    settings = _settings()
    try:
        check_strength(password)
    except CallgateError as exc:
        raise click.ClickException(exc.detail) from exc
    password_hash = hash_password(password)

    async def job(session: AsyncSession) -> str:
        now = utcnow()
        row = await get_or_create_team(
            session, name=team, now=now, max_live_calls=settings.default_team_max_live_calls
        )
        user = await create_user(
            session, team_id=row.id, email=email, role=Role(role), password_hash=password_hash, now=now
        )
        return user.id

    user_id = _run(settings, job)
    click.echo(f"created {role} {email.strip().lower()} ({user_id}) in team {team!r}")


@main.group("credits")
def credits_group() -> None:
    """Call credits: a team's optional balance of call-seconds that live calls draw down."""


@credits_group.command("set")
@click.option("--team", default="default", show_default=True, help="Team name; created if missing.")
@click.option("--seconds", type=click.FloatRange(0, 1e9), default=None, help="The new balance.")
@click.option("--unlimited", is_flag=True, help="Stop metering the team (the default for new teams).")
def credits_set(team: str, seconds: float | None, unlimited: bool) -> None:
    """Set the team's balance; once it is spent, new calls are refused (VoiceHub: 403)."""
    from callgate.domain import credits
    from callgate.domain.keys import get_or_create_team

    if unlimited == (seconds is not None):
        raise click.UsageError("give exactly one of --seconds or --unlimited")
    settings = _settings()

    async def job(session: AsyncSession) -> None:
        now = utcnow()
        row = await get_or_create_team(
            session, name=team, now=now, max_live_calls=settings.default_team_max_live_calls
        )
        await credits.set_balance(session, team_id=row.id, seconds=seconds, now=now)

    _run(settings, job)
    click.echo(f"team {team!r}: " + ("not metered" if unlimited else f"{seconds:g} call-seconds"))


@credits_group.command("show")
@click.option("--team", default="default", show_default=True)
def credits_show(team: str) -> None:
    """Print the call-seconds the team has left ("unlimited" when it is not metered)."""
    from callgate.domain import credits
    from callgate.domain.keys import get_or_create_team

    settings = _settings()

    async def job(session: AsyncSession) -> float | None:
        now = utcnow()
        row = await get_or_create_team(
            session, name=team, now=now, max_live_calls=settings.default_team_max_live_calls
        )
        return await credits.remaining_seconds(session, team_id=row.id, now=now)

    left = _run(settings, job)
    click.echo("unlimited" if left is None else f"{left:.0f}")


@keys.command("list")
@click.option("--team", default="default", show_default=True)
def keys_list(team: str) -> None:
    """List a team's keys (ids, types, state; never the keys themselves)."""
    from sqlalchemy import select

    from callgate.store.models import ApiKey, Team

    settings = _settings()

    async def job(session: AsyncSession) -> list[ApiKey]:
        stmt = (
            select(ApiKey)
            .join(Team, Team.id == ApiKey.team_id)
            .where(Team.name == team)
            .order_by(ApiKey.created_at)
        )
        return list((await session.execute(stmt)).scalars())

    for key in _run(settings, job):
        state = f"revoked {key.revoked_at:%Y-%m-%d %H:%M}" if key.revoked_at else "active"
        used = f"last used {key.last_used_at:%Y-%m-%d %H:%M}" if key.last_used_at else "never used"
        click.echo(f"{key.id}\t{key.type}\t{state}\t{used}\t{key.name or ''}")


@keys.command("revoke")
@click.argument("key_id")
@click.option("--team", default="default", show_default=True)
def keys_revoke(key_id: str, team: str) -> None:
    """Revoke a key. Running nodes stop accepting it within CALLGATE_KEY_CACHE_TTL_S (5 s)."""
    from sqlalchemy import select

    from callgate.domain.keys import revoke_key
    from callgate.errors import NotFound
    from callgate.store.models import Team

    settings = _settings()

    async def job(session: AsyncSession) -> None:
        team_id = (await session.execute(select(Team.id).where(Team.name == team))).scalar_one_or_none()
        if team_id is None:
            raise NotFound(f"no team named {team!r}")
        await revoke_key(session, team_id=team_id, key_id=key_id, now=utcnow())

    _run(settings, job)
    click.echo(f"revoked {key_id}")


@main.group()
def agents() -> None:
    """Agents."""


@agents.command("create")
@click.option("--file", "path", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True)
@click.option("--team", default="default", show_default=True)
def agents_create(path: Path, team: str) -> None:
    """Create an agent from a YAML or JSON file (the body of POST /v1/agents)."""
    from callgate.api.problems import field_errors
    from callgate.api.schemas.agents import AgentCreate
    from callgate.domain.agents import create_agent
    from callgate.domain.keys import get_or_create_team
    from callgate.providers.settings import use_whisper_models

    settings = _settings()
    use_whisper_models(settings.whisper_models, default=settings.whisper_default_model)  # `model` names
    try:
        raw: Any = yaml.safe_load(path.read_text())
        body = AgentCreate.model_validate(raw)
    except yaml.YAMLError as exc:
        raise click.ClickException(f"{path} is not valid YAML/JSON: {exc}") from exc
    except ValidationError as exc:
        lines = [f"  {e['field']}: {e['message']}" for e in field_errors(exc.errors())]
        raise click.ClickException("invalid agent:\n" + "\n".join(lines)) from exc
    except CallgateError as exc:
        lines = [
            f"  {e.get('loc') or e.get('field')}: {e.get('msg') or e.get('message')}"
            for e in exc.errors or []
        ]
        raise click.ClickException(f"invalid agent: {exc.detail}\n" + "\n".join(lines)) from exc
    fields = body.model_dump(mode="json")

    async def job(session: AsyncSession) -> str:
        now = utcnow()
        row = await get_or_create_team(
            session, name=team, now=now, max_live_calls=settings.default_team_max_live_calls
        )
        return (await create_agent(session, team_id=row.id, fields=fields, now=now)).id

    click.echo(_run(settings, job))


@agents.command("list")
@click.option("--team", default="default", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def agents_list(team: str, as_json: bool) -> None:
    """List a team's agents."""
    from sqlalchemy import select

    from callgate.store.models import Agent, Team

    settings = _settings()

    async def job(session: AsyncSession) -> list[tuple[str, str, str]]:
        stmt = (
            select(Agent.id, Agent.name, Agent.prompt)
            .join(Team, Team.id == Agent.team_id)
            .where(Team.name == team, Agent.deleted_at.is_(None))
            .order_by(Agent.created_at)
        )
        return [(i, n, "prompt" if p else "flow") for i, n, p in await session.execute(stmt)]

    for agent_id, name, kind in _run(settings, job):
        if as_json:
            click.echo(json.dumps({"id": agent_id, "name": name, "kind": kind}))
        else:
            click.echo(f"{agent_id}\t{kind}\t{name}")


@main.group("carriers")
def carriers_group() -> None:
    """Carriers: SIP trunks and Twilio accounts that phone numbers are reached through."""


async def _team_id(session: AsyncSession, team: str) -> str | None:
    from sqlalchemy import select

    from callgate.store.models import Team

    return (await session.execute(select(Team.id).where(Team.name == team))).scalar_one_or_none()


@carriers_group.command("create")
@click.option("--file", "path", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True)
@click.option("--team", default="default", show_default=True, help="Team name; created if missing.")
def carriers_create(path: Path, team: str) -> None:
    """Create a carrier from a YAML or JSON file (the body of POST /v1/carriers; secrets stay out of
    the command line). Prints the carrier's id."""
    from pydantic import TypeAdapter

    from callgate.api.carriers import body_fields
    from callgate.api.problems import field_errors
    from callgate.api.schemas.carriers import CarrierCreate
    from callgate.domain.carriers import create_carrier
    from callgate.domain.keys import get_or_create_team

    settings = _settings()
    try:
        raw: Any = yaml.safe_load(path.read_text())
        body = TypeAdapter(CarrierCreate).validate_python(raw)
    except yaml.YAMLError as exc:
        raise click.ClickException(f"{path} is not valid YAML/JSON: {exc}") from exc
    except ValidationError as exc:
        lines = [f"  {e['field']}: {e['message']}" for e in field_errors(exc.errors())]
        raise click.ClickException("invalid carrier:\n" + "\n".join(lines)) from exc
    fields = body_fields(body)

    async def job(session: AsyncSession) -> str:
        now = utcnow()
        row = await get_or_create_team(
            session, name=team, now=now, max_live_calls=settings.default_team_max_live_calls
        )
        return (await create_carrier(session, team_id=row.id, fields=fields, now=now)).id

    click.echo(_run(settings, job))


@carriers_group.command("list")
@click.option("--team", default="default", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line (as GET /v1/carriers).")
def carriers_list(team: str, as_json: bool) -> None:
    """List a team's carriers (never their secrets)."""
    from callgate.api.carriers import carrier_public
    from callgate.domain.carriers import Carrier, list_carriers

    settings = _settings()

    async def job(session: AsyncSession) -> list[Carrier]:
        team_id = await _team_id(session, team)
        if team_id is None:
            return []
        out: list[Carrier] = []
        cursor: str | None = None
        while True:
            page = await list_carriers(session, team_id=team_id, limit=200, cursor=cursor)
            out.extend(page.items)
            if (cursor := page.next_cursor) is None:
                return out

    for carrier in _run(settings, job):
        if as_json:
            click.echo(carrier_public(carrier).model_dump_json())
            continue
        where = carrier.account_sid or ""
        if carrier.outbound is not None:
            where = f"{carrier.outbound.transport}:{carrier.outbound.host}:{carrier.outbound.port}"
        click.echo(f"{carrier.id}\t{carrier.kind}\t{carrier.name}\t{where}")


@carriers_group.command("delete")
@click.argument("carrier_id")
@click.option("--team", default="default", show_default=True)
def carriers_delete(carrier_id: str, team: str) -> None:
    """Delete a carrier; its phone numbers stay, without a carrier."""
    from callgate.domain.carriers import delete_carrier
    from callgate.errors import NotFound

    settings = _settings()

    async def job(session: AsyncSession) -> None:
        team_id = await _team_id(session, team)
        if team_id is None:
            raise NotFound(f"no team named {team!r}")
        await delete_carrier(session, team_id=team_id, carrier_id=carrier_id)

    _run(settings, job)
    click.echo(f"deleted {carrier_id}")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
