"""Operators as people: accounts with a role and an argon2 password hash, bearer tokens (a login's,
for hours, or a script's named API token), and the failed logins that rate-limit guessing. Kept in
the database, not in a process, so that any instance of the service can answer any request.
"""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from . import audit
from .errors import Conflict, LoginRefused, NotFound
from .engine import aware, iso, utc_now
from .fleet import token_hash
from .schema import login_failures, tokens, users

SESSION_HOURS = 12
LOGIN_FAILURES_ALLOWED = 5        # per user name in the window; then 429 until the window passes
LOGIN_WINDOW = timedelta(minutes=15)
_hasher = PasswordHasher()         # argon2id with the library's (RFC 9106 low-memory) parameters
# Checked against when the user does not exist, so that a wrong name costs as long as a wrong
# password and timing does not tell which names exist.
_DUMMY_HASH = _hasher.hash("not a password of anyone's")


class People:
    def __init__(self, engine: sa.Engine):
        self.engine = engine

    def create_user(self, username: str, role: str, password: str, actor: str) -> dict[str, Any]:
        with self.engine.begin() as connection:
            if connection.execute(sa.select(users.c.username).where(
                    users.c.username == username)).first() is not None:
                raise Conflict(f"user {username} exists")
            created = utc_now()
            connection.execute(sa.insert(users).values(
                username=username, role=role, password_hash=_hasher.hash(password),
                created_at=created))
            audit.write(connection, actor, "user_create", None, username=username, role=role)
        return {"username": username, "role": role, "disabled": False, "created_at": iso(created)}

    def change_user(self, username: str, actor: str, *, role: str | None = None,
                    password: str | None = None, disabled: bool | None = None) -> dict[str, Any]:
        values: dict[str, Any] = {}
        if role is not None:
            values["role"] = role
        if password is not None:
            values["password_hash"] = _hasher.hash(password)
        if disabled is not None:
            values["disabled"] = disabled
        with self.engine.begin() as connection:
            if values and not connection.execute(sa.update(users).values(**values).where(
                    users.c.username == username)).rowcount:
                raise NotFound(f"no user {username}")
            if password is not None or disabled:
                # A new password or a disabled account ends every login of the account.
                connection.execute(sa.delete(tokens).where(tokens.c.username == username,
                                                           tokens.c.kind == "session"))
            if disabled:
                connection.execute(sa.delete(tokens).where(tokens.c.username == username))
            audit.write(connection, actor, "user_change", None, username=username,
                        role=role, password_changed=password is not None, disabled=disabled)
            row = connection.execute(sa.select(users).where(users.c.username == username)).first()
        if row is None:
            raise NotFound(f"no user {username}")
        return _user(row)

    def users(self) -> list[dict[str, Any]]:
        with self.engine.connect() as connection:
            return [_user(r) for r in connection.execute(sa.select(users).order_by(
                users.c.username))]

    def login(self, username: str, password: str, address: str) -> dict[str, Any]:
        """A session token for the right password; refused (and counted) otherwise. Five wrong
        tries for a name in 15 minutes lock that name until the window passes."""
        now = utc_now()
        with self.engine.begin() as connection:
            recent = connection.execute(sa.select(sa.func.count(), sa.func.min(
                login_failures.c.at)).where(login_failures.c.username == username,
                                            login_failures.c.at > now - LOGIN_WINDOW)).one()
            if recent[0] >= LOGIN_FAILURES_ALLOWED:
                wait = int((aware(recent[1]) + LOGIN_WINDOW - now).total_seconds()) + 1
                raise LoginRefused(f"too many failed logins for {username}; try again in "
                                   f"{wait} s", retry_after=max(1, wait))
            row = connection.execute(sa.select(users).where(users.c.username == username)).first()
            good = _verify(row.password_hash if row is not None else _DUMMY_HASH, password)
            if row is None or not good or row.disabled:
                connection.execute(sa.insert(login_failures).values(
                    username=username, address=address[:64], at=now))
                # Old failures go as new ones come: the table stays the size of the window.
                connection.execute(sa.delete(login_failures).where(
                    login_failures.c.at < now - LOGIN_WINDOW))
        if row is None or not good:
            raise LoginRefused("wrong user name or password")
        if row.disabled:
            raise LoginRefused("this account is disabled")
        return self.new_token(row.username, "session", None, SESSION_HOURS / 24, actor=None)

    def new_token(self, username: str, kind: str, name: str | None, lifetime_days: float | None,
                  actor: str | None) -> dict[str, Any]:
        token = secrets.token_urlsafe(32)
        now = utc_now()
        expires = None if lifetime_days is None else now + timedelta(days=lifetime_days)
        with self.engine.begin() as connection:
            role = connection.execute(sa.select(users.c.role).where(
                users.c.username == username, users.c.disabled.is_(False))).scalar()
            if role is None:
                raise NotFound(f"no user {username}")
            connection.execute(sa.insert(tokens).values(
                token_sha256=token_hash(token), username=username, kind=kind, name=name,
                created_at=now, expires_at=expires))
            if actor is not None:
                audit.write(connection, actor, "token_create", None, username=username,
                            name=name, expires_at=iso(expires))
        return {"token": token, "username": username, "role": role, "kind": kind, "name": name,
                "expires_at": iso(expires)}

    def identify(self, token: str) -> tuple[str, str] | None:
        """(user name, role) for a live token of an enabled account, else None."""
        now = utc_now()
        with self.engine.connect() as connection:
            row = connection.execute(
                sa.select(users.c.username, users.c.role, tokens.c.expires_at)
                .join(tokens, tokens.c.username == users.c.username)
                .where(tokens.c.token_sha256 == token_hash(token),
                       users.c.disabled.is_(False))).first()
        if row is None or (row.expires_at is not None and aware(row.expires_at) <= now):
            return None
        return row.username, row.role

    def revoke(self, token: str) -> None:
        with self.engine.begin() as connection:
            connection.execute(sa.delete(tokens).where(tokens.c.token_sha256 == token_hash(token)))


def _verify(stored: str, password: str) -> bool:
    try:
        return _hasher.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


def _user(row) -> dict[str, Any]:
    return {"username": row.username, "role": row.role, "disabled": bool(row.disabled),
            "created_at": iso(row.created_at)}
