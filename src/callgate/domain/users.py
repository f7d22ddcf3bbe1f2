"""Dashboard users: accounts, roles, sign-in sessions and invitations.

Passwords are hashed by the caller (``callgate.auth.passwords``, off the event loop) before they reach
these functions; sessions and invitations are random tokens of which only a digest is stored.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from callgate.auth.passwords import new_token, token_digest
from callgate.domain.ids import new_id
from callgate.errors import Conflict, NotFound, ValidationFailed
from callgate.store.models_users import User, UserInvite, UserSession

INVITE_TTL = timedelta(days=7)
TOUCH_EVERY = timedelta(minutes=1)
"""How stale a session's ``last_seen_at`` may get before a request writes it again: the idle limit is
kept to within this, without a database write on every page."""


class Role(StrEnum):
    """What a user may do: members read and try calls; admins also manage agents, numbers and
    webhooks; owners also manage API keys and users."""

    MEMBER = "member"
    ADMIN = "admin"
    OWNER = "owner"

    @property
    def rank(self) -> int:
        return (Role.MEMBER, Role.ADMIN, Role.OWNER).index(self)

    def allows(self, needed: Role) -> bool:
        return self.rank >= needed.rank


@dataclass(frozen=True, slots=True)
class SignedIn:
    """The person behind a dashboard request."""

    session_id: str
    user_id: str
    team_id: str
    email: str
    role: Role
    csrf_token: str
    last_seen_at: datetime


def normalize_email(email: str, *, field: str = "email") -> str:
    try:
        return validate_email(email.strip(), check_deliverability=False).normalized.lower()
    except EmailNotValidError as exc:
        raise ValidationFailed(
            "the email address is not valid",
            errors=[{"field": field, "message": str(exc), "type": "value_error"}],
        ) from exc


def parse_role(value: str, *, field: str = "role") -> Role:
    try:
        return Role(value)
    except ValueError as exc:
        raise ValidationFailed(
            "unknown role",
            errors=[{"field": field, "message": "one of owner, admin, member", "type": "enum"}],
        ) from exc


async def find_user(session: AsyncSession, *, email: str) -> User | None:
    return (await session.execute(select(User).where(User.email == email.lower()))).scalar_one_or_none()


async def create_user(
    session: AsyncSession, *, team_id: str, email: str, role: Role, password_hash: str, now: datetime
) -> User:
    address = normalize_email(email)
    if await find_user(session, email=address) is not None:
        raise Conflict(f"a user with the address {address!r} exists")
    user = User(
        id=new_id("user"),
        team_id=team_id,
        email=address,
        role=role.value,
        password_hash=password_hash,
        created_at=now,
        updated_at=now,
        last_login_at=None,
    )
    session.add(user)
    await session.flush()
    return user


async def list_users(session: AsyncSession, *, team_id: str) -> list[User]:
    stmt = select(User).where(User.team_id == team_id).order_by(User.created_at, User.id)
    return list((await session.execute(stmt)).scalars())


async def _team_user(session: AsyncSession, *, team_id: str, user_id: str) -> User:
    user = await session.get(User, user_id)
    if user is None or user.team_id != team_id:
        raise NotFound(f"no user with id {user_id!r}")
    return user


async def _owners(session: AsyncSession, *, team_id: str) -> int:
    stmt = select(User.id).where(User.team_id == team_id, User.role == Role.OWNER.value)
    return len(list((await session.execute(stmt)).scalars()))


async def set_role(session: AsyncSession, *, team_id: str, user_id: str, role: Role, now: datetime) -> User:
    user = await _team_user(session, team_id=team_id, user_id=user_id)
    if user.role == Role.OWNER and role is not Role.OWNER and await _owners(session, team_id=team_id) <= 1:
        raise Conflict("a team keeps at least one owner")
    user.role = role.value
    user.updated_at = now
    await session.flush()
    return user


async def delete_user(session: AsyncSession, *, team_id: str, user_id: str) -> None:
    user = await _team_user(session, team_id=team_id, user_id=user_id)
    if user.role == Role.OWNER and await _owners(session, team_id=team_id) <= 1:
        raise Conflict("a team keeps at least one owner")
    await session.delete(user)
    await session.flush()


# ------------------------------------------------------------------------------------------ sessions


@dataclass(frozen=True, slots=True)
class SessionLimits:
    """How long a sign-in lasts: ``idle`` without a request, ``absolute`` at most from sign-in."""

    idle: timedelta
    absolute: timedelta


async def start_session(
    session: AsyncSession, *, user: User, now: datetime, limits: SessionLimits
) -> tuple[str, SignedIn]:
    """A new session for ``user`` (a fresh id at every sign-in: no session fixation). Returns the
    cookie's token and who it signs in. The user's sessions that have run out are removed."""
    await session.execute(
        delete(UserSession).where(
            UserSession.user_id == user.id,
            (UserSession.expires_at <= now) | (UserSession.last_seen_at <= now - limits.idle),
        )
    )
    token = new_token()
    row = UserSession(
        id=token_digest(token),
        user_id=user.id,
        csrf_token=new_token(),
        created_at=now,
        last_seen_at=now,
        expires_at=now + limits.absolute,
    )
    user.last_login_at = now
    session.add(row)
    await session.flush()
    return token, _signed_in(row, user)


def _signed_in(row: UserSession, user: User) -> SignedIn:
    return SignedIn(
        session_id=row.id,
        user_id=user.id,
        team_id=user.team_id,
        email=user.email,
        role=Role(user.role),
        csrf_token=row.csrf_token,
        last_seen_at=row.last_seen_at,
    )


async def signed_in(
    session: AsyncSession, *, token: str, now: datetime, limits: SessionLimits
) -> SignedIn | None:
    """Who the session token belongs to, or None (unknown, signed out, past its absolute limit, or
    idle longer than ``limits.idle``)."""
    stmt = (
        select(UserSession, User)
        .join(User, User.id == UserSession.user_id)
        .where(
            UserSession.id == token_digest(token),
            UserSession.expires_at > now,
            UserSession.last_seen_at > now - limits.idle,
        )
    )
    found = (await session.execute(stmt)).one_or_none()
    if found is None:
        return None
    row, user = found
    return _signed_in(row, user)


async def touch_session(session: AsyncSession, *, session_id: str, now: datetime) -> None:
    """The session was used at ``now`` (its idle time starts again)."""
    await session.execute(update(UserSession).where(UserSession.id == session_id).values(last_seen_at=now))


async def end_session(session: AsyncSession, *, session_id: str) -> None:
    await session.execute(delete(UserSession).where(UserSession.id == session_id))


async def end_all_sessions(session: AsyncSession, *, user_id: str) -> int:
    """Sign the user out everywhere; returns how many sessions ended."""
    result = await session.execute(delete(UserSession).where(UserSession.user_id == user_id))
    return int(result.rowcount)  # type: ignore[attr-defined]


# ----------------------------------------------------------------------------------------- invitations


async def create_invite(
    session: AsyncSession, *, team_id: str, email: str, role: Role, created_by: str | None, now: datetime
) -> tuple[UserInvite, str]:
    """An invitation for ``email``; returns the row and the link's token (shown once)."""
    address = normalize_email(email)
    if await find_user(session, email=address) is not None:
        raise Conflict(f"a user with the address {address!r} exists")
    token = new_token()
    invite = UserInvite(
        id=new_id("invite"),
        team_id=team_id,
        email=address,
        role=role.value,
        token_hash=token_digest(token),
        created_by=created_by,
        created_at=now,
        expires_at=now + INVITE_TTL,
        accepted_at=None,
    )
    session.add(invite)
    await session.flush()
    return invite, token


async def open_invite(session: AsyncSession, *, token: str, now: datetime) -> UserInvite:
    stmt = select(UserInvite).where(
        UserInvite.token_hash == token_digest(token),
        UserInvite.accepted_at.is_(None),
        UserInvite.expires_at > now,
    )
    invite = (await session.execute(stmt)).scalar_one_or_none()
    if invite is None:
        raise NotFound("this invitation is not valid (used, expired or unknown)")
    return invite


async def accept_invite(session: AsyncSession, *, token: str, password_hash: str, now: datetime) -> User:
    invite = await open_invite(session, token=token, now=now)
    invite.accepted_at = now
    return await create_user(
        session,
        team_id=invite.team_id,
        email=invite.email,
        role=Role(invite.role),
        password_hash=password_hash,
        now=now,
    )


async def pending_invites(session: AsyncSession, *, team_id: str, now: datetime) -> list[UserInvite]:
    stmt = (
        select(UserInvite)
        .where(UserInvite.team_id == team_id, UserInvite.accepted_at.is_(None), UserInvite.expires_at > now)
        .order_by(UserInvite.created_at.desc())
    )
    return list((await session.execute(stmt)).scalars())
