"""Accounts: who may sign in, with which roles. Every change is audited in its transaction.

Services are keyword-only functions over a :class:`~opsbook.db.Database`; they join the
caller's transaction when there is one (the state change and its audit record commit together).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn

from opsbook import audit
from opsbook.audit._log import utcnow
from opsbook.db import Database
from opsbook.errors import ConflictError, DatabaseError, NotFoundError, ValidationError
from opsbook.users import passwords
from opsbook.users.errors import AuthenticationError
from opsbook.users.roles import EXTRA_ROLES, ROLES

USERNAME = re.compile(r"^[a-z0-9][a-z0-9._@+-]{0,63}$")
USERNAME_HINT = (
    "1-64 characters: lowercase letters, digits and . _ @ + - (starting with a letter or digit)"
)
SIGNIN_FAILED = "wrong username or password, or the account may not sign in"


@dataclass(frozen=True)
class Account:
    id: int
    username: str
    display_name: str
    email: str | None
    roles: tuple[str, ...]  # as granted (not expanded)
    source: str  # local | oidc
    disabled: bool
    failed_logins: int
    locked_until: str | None
    has_password: bool
    created_at: str
    last_login_at: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "username": self.username,
            "display_name": self.display_name,
            "email": self.email,
            "roles": list(self.roles),
            "source": self.source,
            "disabled": self.disabled,
            "locked_until": self.locked_until,
            "created_at": self.created_at,
            "last_login_at": self.last_login_at,
        }


@dataclass(frozen=True)
class LockoutPolicy:
    max_failures: int = 5
    lockout_seconds: float = 900.0


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(when: datetime) -> str:
    return when.isoformat(timespec="microseconds").replace("+00:00", "Z")


def parse_ts(ts: str) -> datetime:
    return datetime.fromisoformat(ts.replace("Z", "+00:00"))


def check_username(username: str) -> str:
    if not isinstance(username, str) or not USERNAME.match(username):
        raise ValidationError(
            f"{str(username)[:80]!r} is not a valid username", field="username", hint=USERNAME_HINT
        )
    return username


def known_roles(*, workspace_config: Any = None, extra: Iterable[str] = ()) -> tuple[str, ...]:
    """Roles that may be granted: the built-in ones, ``approver``, those named in opsbook.toml
    ``[users]`` and any ``extra`` (e.g. roles the runbooks name)."""
    found: list[str] = [*ROLES, *EXTRA_ROLES]
    users = (workspace_config or {}).get("users", {}) if workspace_config is not None else {}
    for roles in users.values() if isinstance(users, dict) else ():
        found.extend(str(r) for r in roles)
    found.extend(extra)
    return tuple(dict.fromkeys(found))


def check_role(role: str, known: Sequence[str]) -> str:
    if role not in known:
        raise ValidationError(
            f"unknown role {str(role)[:40]!r}",
            field="role",
            hint=f"roles are: {', '.join(known)}",
        )
    return role


def _roles(db: Database, user_id: int) -> tuple[str, ...]:
    rows = db.query("SELECT role FROM user_roles WHERE user_id = ? ORDER BY role", (user_id,))
    return tuple(str(r["role"]) for r in rows)


def jit_roles(
    *, db: Database, username: str, now: datetime | None = None
) -> tuple[tuple[str, ...], datetime | None]:
    """Roles ``username`` holds just in time (approved, not expired: issue 14) and when the
    first of them ends. They add to the account's own roles wherever roles are resolved; an
    expired grant stops counting at its expiry without anyone sweeping it."""
    when = _iso(now or _now())
    try:
        rows = db.query(
            "SELECT role, expires_at FROM jit_grants WHERE username = ? AND state = 'active'"
            " AND expires_at > ?",
            (username, when),
        )
    except DatabaseError:  # a database older than migration 0013
        return (), None
    if not rows:
        return (), None
    return tuple(sorted({str(r["role"]) for r in rows})), min(
        parse_ts(str(r["expires_at"])) for r in rows
    )


def _account(row: dict[str, Any], roles: tuple[str, ...]) -> Account:
    return Account(
        id=int(row["id"]),
        username=str(row["username"]),
        display_name=str(row["display_name"] or ""),
        email=row["email"],
        roles=roles,
        source=str(row["source"]),
        disabled=bool(row["disabled"]),
        failed_logins=int(row["failed_logins"]),
        locked_until=row["locked_until"],
        has_password=row["password_hash"] is not None,
        created_at=str(row["created_at"]),
        last_login_at=row["last_login_at"],
    )


def find_account(*, db: Database, username: str) -> Account | None:
    row = db.one("SELECT * FROM users WHERE username = ?", (username,))
    return _account(row, _roles(db, int(row["id"]))) if row else None


def get_account(*, db: Database, username: str) -> Account:
    account = find_account(db=db, username=username)
    if account is None:
        raise NotFoundError(
            f"no account {username[:80]!r}", hint="list accounts with `opsbook users list`"
        )
    return account


def get_account_by_id(*, db: Database, user_id: int) -> Account | None:
    row = db.one("SELECT * FROM users WHERE id = ?", (user_id,))
    return _account(row, _roles(db, user_id)) if row else None


def list_accounts(*, db: Database) -> list[Account]:
    roles: dict[int, list[str]] = {}
    for r in db.query("SELECT user_id, role FROM user_roles ORDER BY role"):
        roles.setdefault(int(r["user_id"]), []).append(str(r["role"]))
    rows = db.query("SELECT * FROM users ORDER BY username")
    return [_account(r, tuple(roles.get(int(r["id"]), ()))) for r in rows]


def count_accounts(*, db: Database) -> int:
    row = db.one("SELECT COUNT(*) AS n FROM users")
    return int(row["n"]) if row else 0


def create_account(
    *,
    db: Database,
    actor: str,
    username: str,
    roles: Sequence[str],
    known: Sequence[str],
    password: str | None = None,
    display_name: str = "",
    email: str | None = None,
    source: str = "local",
) -> Account:
    check_username(username)
    for role in roles:
        check_role(role, known)
    hashed = passwords.hash_password(password) if password is not None else None
    now = utcnow()
    with db.transaction():
        if db.one("SELECT id FROM users WHERE username = ?", (username,)):
            raise ConflictError(
                f"an account {username!r} already exists",
                hint="pick another name, or change this account's roles with `grant`",
            )
        user_id = db.insert(
            "INSERT INTO users (username, display_name, email, password_hash, source, disabled,"
            " failed_logins, created_at, updated_at) VALUES (?, ?, ?, ?, ?, 0, 0, ?, ?)",
            (username, display_name[:200], email, hashed, source, now, now),
        )
        for role in dict.fromkeys(roles):
            db.execute(
                "INSERT INTO user_roles (user_id, role, granted_by, granted_at)"
                " VALUES (?, ?, ?, ?)",
                (user_id, role, actor, now),
            )
        audit.record(
            db=db,
            actor=actor,
            action="user.created",
            subject=f"user:{username}",
            payload={"roles": list(dict.fromkeys(roles)), "source": source, "email": email},
        )
    return get_account(db=db, username=username)


def _active_admins(db: Database) -> int:
    row = db.one(
        "SELECT COUNT(*) AS n FROM users u JOIN user_roles r ON r.user_id = u.id"
        " WHERE r.role = 'admin' AND u.disabled = 0"
    )
    return int(row["n"]) if row else 0


def _keep_an_admin(db: Database, account: Account, what: str) -> None:
    if "admin" in account.roles and not account.disabled and _active_admins(db) <= 1:
        raise ConflictError(
            f"{account.username} is the last enabled admin; {what} would lock everyone out",
            hint="grant admin to another account first",
        )


def set_disabled(*, db: Database, actor: str, username: str, disabled: bool) -> Account:
    with db.transaction():
        account = get_account(db=db, username=username)
        if account.disabled == disabled:
            return account
        if disabled:
            _keep_an_admin(db, account, "disabling it")
        db.execute(
            "UPDATE users SET disabled = ?, failed_logins = 0, locked_until = NULL,"
            " updated_at = ? WHERE id = ?",
            (int(disabled), utcnow(), account.id),
        )
        if disabled:
            db.execute("DELETE FROM sessions WHERE user_id = ?", (account.id,))
        audit.record(
            db=db,
            actor=actor,
            action="user.disabled" if disabled else "user.enabled",
            subject=f"user:{username}",
            payload={},
        )
    return get_account(db=db, username=username)


def grant_role(
    *, db: Database, actor: str, username: str, role: str, known: Sequence[str]
) -> Account:
    check_role(role, known)
    with db.transaction():
        account = get_account(db=db, username=username)
        if role not in account.roles:
            db.execute(
                "INSERT INTO user_roles (user_id, role, granted_by, granted_at)"
                " VALUES (?, ?, ?, ?)",
                (account.id, role, actor, utcnow()),
            )
            audit.record(
                db=db,
                actor=actor,
                action="user.role.granted",
                subject=f"user:{username}",
                payload={"role": role, "roles": sorted({*account.roles, role})},
            )
    return get_account(db=db, username=username)


def revoke_role(*, db: Database, actor: str, username: str, role: str) -> Account:
    with db.transaction():
        account = get_account(db=db, username=username)
        if role not in account.roles:
            raise NotFoundError(
                f"{username} does not hold the role {role[:40]!r}",
                hint=f"its roles are: {', '.join(account.roles) or 'none'}",
            )
        if role == "admin":
            _keep_an_admin(db, account, "revoking admin")
        db.execute("DELETE FROM user_roles WHERE user_id = ? AND role = ?", (account.id, role))
        audit.record(
            db=db,
            actor=actor,
            action="user.role.revoked",
            subject=f"user:{username}",
            payload={"role": role, "roles": sorted(set(account.roles) - {role})},
        )
    return get_account(db=db, username=username)


def set_password(*, db: Database, actor: str, username: str, password: str) -> None:
    hashed = passwords.hash_password(password)
    with db.transaction():
        account = get_account(db=db, username=username)
        db.execute(
            "UPDATE users SET password_hash = ?, failed_logins = 0, locked_until = NULL,"
            " updated_at = ? WHERE id = ?",
            (hashed, utcnow(), account.id),
        )
        db.execute("DELETE FROM sessions WHERE user_id = ?", (account.id,))
        audit.record(db=db, actor=actor, action="user.password.changed", subject=f"user:{username}")


def authenticate(
    *,
    db: Database,
    username: str,
    password: str,
    policy: LockoutPolicy,
    now: datetime | None = None,
    verify: Callable[[str | None, str], bool] = passwords.verify_password,
) -> Account:
    """Check a password. Failures count towards a lockout; every outcome is audited. Raises
    :class:`AuthenticationError` with the same message whatever went wrong.

    Every branch (unknown account, disabled, locked, wrong or right password) does the same
    Argon2 verification (``verify``; a dummy hash with the same parameters when there is no
    account or no password), so the answer's timing does not tell whether a username exists
    or is locked (issue 16). ``verify`` is a parameter so tests can count the calls."""
    when = now or _now()
    name = username.strip().lower()[:64]
    row = db.one("SELECT * FROM users WHERE username = ?", (name,))
    subject = f"user:{name}"
    # Verified before any branch: the same work whatever the account's state.
    matches = verify(None if row is None else row["password_hash"], password)
    if row is None:
        _fail(db, name, subject, "unknown account")
    if row["disabled"]:
        _fail(db, name, subject, "account disabled")
    if row["locked_until"] and parse_ts(str(row["locked_until"])) > when:
        _fail(db, name, subject, "account locked", action="auth.signin.refused")
    if not matches:
        failures = int(row["failed_logins"]) + 1
        locked = failures >= policy.max_failures
        until = _iso(when + timedelta(seconds=policy.lockout_seconds)) if locked else None
        with db.transaction():
            db.execute(
                "UPDATE users SET failed_logins = ?, locked_until = ? WHERE id = ?",
                (0 if locked else failures, until, row["id"]),
            )
            audit.record(
                db=db,
                actor=name,
                action="auth.signin.failed",
                subject=subject,
                payload={"reason": "wrong password", "failures": failures},
            )
            if locked:
                audit.record(
                    db=db,
                    actor="opsbook",
                    action="auth.account.locked",
                    subject=subject,
                    payload={"failures": failures, "until": until},
                )
        raise AuthenticationError(SIGNIN_FAILED, hint="check the username and password")
    with db.transaction():
        db.execute(
            "UPDATE users SET failed_logins = 0, locked_until = NULL, last_login_at = ?"
            " WHERE id = ?",
            (_iso(when), row["id"]),
        )
        if passwords.needs_rehash(str(row["password_hash"])):
            db.execute(
                "UPDATE users SET password_hash = ? WHERE id = ?",
                (passwords.hash_password(password), row["id"]),
            )
        audit.record(
            db=db,
            actor=name,
            action="auth.signin.succeeded",
            subject=subject,
            payload={"method": "password"},
        )
    return get_account(db=db, username=name)


def _fail(
    db: Database, name: str, subject: str, reason: str, *, action: str = "auth.signin.failed"
) -> NoReturn:
    audit.record(
        db=db, actor=name or "-", action=action, subject=subject, payload={"reason": reason}
    )
    raise AuthenticationError(SIGNIN_FAILED, hint="check the username and password")


def upsert_external(
    *,
    db: Database,
    username: str,
    display_name: str,
    email: str | None,
    roles: Sequence[str] | None,
    default_roles: Sequence[str],
    known: Sequence[str],
    source: str = "oidc",
) -> Account:
    """The account of someone signed in through single sign-on: created on first sign-in
    (with ``roles`` from the identity provider, else ``default_roles``); when the provider
    sends roles, they replace the account's roles (changes are audited)."""
    check_username(username)
    wanted = [r for r in (roles if roles is not None else default_roles) if r in known]
    existing = find_account(db=db, username=username)
    if existing is not None and existing.disabled:
        _fail(db, username, f"user:{username}", "account disabled")
    with db.transaction():
        account = find_account(db=db, username=username)
        if account is None:
            account = create_account(
                db=db,
                actor=f"{source}:{username}",
                username=username,
                roles=wanted,
                known=known,
                display_name=display_name,
                email=email,
                source=source,
            )
        elif roles is not None and set(wanted) != set(account.roles):
            for role in set(wanted) - set(account.roles):
                grant_role(db=db, actor=source, username=username, role=role, known=known)
            for role in set(account.roles) - set(wanted):
                revoke_role(db=db, actor=source, username=username, role=role)
        db.execute(
            "UPDATE users SET last_login_at = ?, display_name = ?, email = ? WHERE id = ?",
            (utcnow(), display_name[:200] or account.display_name, email, account.id),
        )
        audit.record(
            db=db,
            actor=username,
            action="auth.signin.succeeded",
            subject=f"user:{username}",
            payload={"method": source},
        )
    return get_account(db=db, username=username)
