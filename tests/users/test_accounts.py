"""Accounts, lockout, sessions, tokens and permission checks on a real SQLite database (and
the migration on PostgreSQL when its binaries are installed)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from opsbook import audit
from opsbook.db import Database
from opsbook.errors import ConflictError, NotFoundError, PermissionDenied, ValidationError
from opsbook.users import accounts, passwords, sessions, tokens
from opsbook.users.access import SCHEDULER, local_admin, principal_for, require, roles_resolver
from opsbook.users.bootstrap import ensure_first_admin
from opsbook.users.errors import AuthenticationError
from opsbook.users.roles import ROLES, expand, permissions_of

KNOWN = accounts.known_roles(extra=("approver",))
POLICY = accounts.LockoutPolicy(max_failures=3, lockout_seconds=600)


def actions(db: Database, subject: str) -> list[str]:
    return [
        r["action"] for r in db.query("SELECT action FROM events WHERE subject = ?", (subject,))
    ]


def make(db: Database, name: str = "alice", roles: tuple[str, ...] = ("operator",)) -> None:
    accounts.create_account(
        db=db, actor="t", username=name, roles=roles, known=KNOWN, password="correct horse battery"
    )


def test_roles_imply_lower_levels_and_admin_everything() -> None:
    assert set(expand(["engineer"])) == {"engineer", "operator"}
    assert "approver" in expand(["manager"])
    assert set(ROLES) <= set(expand(["admin"]))
    assert "executions:run" not in permissions_of(["auditor"])
    assert "audit:export" in permissions_of(["auditor"])
    assert permissions_of(["admin"], scopes=["read"]) == frozenset(
        {"runbooks:read", "executions:read", "monitoring:read", "incidents:read"}
    )


def test_create_grant_revoke_disable_are_audited(sqlite_db: Database) -> None:
    make(sqlite_db)
    a = accounts.grant_role(
        db=sqlite_db, actor="boss", username="alice", role="approver", known=KNOWN
    )
    assert a.roles == ("approver", "operator")
    a = accounts.revoke_role(db=sqlite_db, actor="boss", username="alice", role="operator")
    assert a.roles == ("approver",)
    a = accounts.set_disabled(db=sqlite_db, actor="boss", username="alice", disabled=True)
    assert a.disabled
    assert actions(sqlite_db, "user:alice") == [
        "user.created",
        "user.role.granted",
        "user.role.revoked",
        "user.disabled",
    ]
    assert audit.verify(db=sqlite_db).ok


def test_bad_input(sqlite_db: Database) -> None:
    with pytest.raises(ValidationError) as e:
        make(sqlite_db, name="Not Valid")
    assert e.value.field == "username"
    with pytest.raises(ValidationError) as e:
        make(sqlite_db, roles=("wizard",))
    assert e.value.field == "role"
    with pytest.raises(ValidationError) as e:
        accounts.create_account(
            db=sqlite_db, actor="t", username="bob", roles=(), known=KNOWN, password="short"
        )
    assert e.value.field == "password"
    make(sqlite_db)
    with pytest.raises(ConflictError):
        make(sqlite_db)
    with pytest.raises(NotFoundError):
        accounts.get_account(db=sqlite_db, username="nobody")


def test_the_last_admin_stays(sqlite_db: Database) -> None:
    make(sqlite_db, "root", ("admin",))
    with pytest.raises(ConflictError):
        accounts.set_disabled(db=sqlite_db, actor="root", username="root", disabled=True)
    with pytest.raises(ConflictError):
        accounts.revoke_role(db=sqlite_db, actor="root", username="root", role="admin")
    make(sqlite_db, "root2", ("admin",))
    accounts.revoke_role(db=sqlite_db, actor="root", username="root", role="admin")


def test_authenticate_and_lockout(sqlite_db: Database) -> None:
    make(sqlite_db)
    ok = accounts.authenticate(
        db=sqlite_db, username="Alice ", password="correct horse battery", policy=POLICY
    )
    assert ok.last_login_at
    now = datetime.now(UTC)
    for _ in range(3):
        with pytest.raises(AuthenticationError):
            accounts.authenticate(
                db=sqlite_db, username="alice", password="wrong", policy=POLICY, now=now
            )
    # locked: even the right password is refused, with the same message
    with pytest.raises(AuthenticationError) as e:
        accounts.authenticate(
            db=sqlite_db, username="alice", password="correct horse battery", policy=POLICY, now=now
        )
    assert e.value.message == accounts.SIGNIN_FAILED
    later = now + timedelta(seconds=601)
    accounts.authenticate(
        db=sqlite_db, username="alice", password="correct horse battery", policy=POLICY, now=later
    )
    seen = actions(sqlite_db, "user:alice")
    assert seen.count("auth.signin.failed") == 3
    assert "auth.account.locked" in seen and "auth.signin.refused" in seen
    assert seen.count("auth.signin.succeeded") == 2
    with pytest.raises(AuthenticationError):
        accounts.authenticate(db=sqlite_db, username="ghost", password="x", policy=POLICY)
    assert actions(sqlite_db, "user:ghost") == ["auth.signin.failed"]
    stored = sqlite_db.one("SELECT password_hash FROM users WHERE username = 'alice'")
    assert stored and str(stored["password_hash"]).startswith("$argon2id$")


def test_sessions_expire_and_end(sqlite_db: Database) -> None:
    make(sqlite_db)
    account = accounts.get_account(db=sqlite_db, username="alice")
    now = datetime.now(UTC)
    raw, s = sessions.create_session(
        db=sqlite_db, account=account, method="password", ttl=timedelta(hours=1), now=now
    )
    idle = timedelta(minutes=10)
    found = sessions.resolve_session(db=sqlite_db, raw=raw, idle_timeout=idle, now=now)
    assert found and found.csrf_token == s.csrf_token
    assert (
        sessions.resolve_session(
            db=sqlite_db, raw=raw, idle_timeout=idle, now=now + timedelta(minutes=11)
        )
        is None
    )
    raw, _ = sessions.create_session(
        db=sqlite_db, account=account, method="password", ttl=timedelta(minutes=5), now=now
    )
    assert (
        sessions.resolve_session(
            db=sqlite_db, raw=raw, idle_timeout=timedelta(hours=1), now=now + timedelta(minutes=6)
        )
        is None
    )
    raw, _ = sessions.create_session(
        db=sqlite_db, account=account, method="password", ttl=timedelta(hours=1)
    )
    accounts.set_disabled(db=sqlite_db, actor="t", username="alice", disabled=True)
    assert sessions.resolve_session(db=sqlite_db, raw=raw, idle_timeout=idle) is None
    assert sessions.resolve_session(db=sqlite_db, raw="", idle_timeout=idle) is None
    stored = sqlite_db.query("SELECT id_hash FROM sessions")
    assert all(raw not in r["id_hash"] for r in stored)


def test_tokens(sqlite_db: Database) -> None:
    make(sqlite_db)
    token, secret = tokens.create_token(
        db=sqlite_db, actor="alice", username="alice", name="ci", scopes=["read", "run"]
    )
    account, found = tokens.resolve_token(db=sqlite_db, raw=secret)
    assert account.username == "alice" and found.scopes == ("read", "run")
    assert found.last_used_at is None
    assert tokens.get_token(db=sqlite_db, token_id=token.id).last_used_at
    with pytest.raises(AuthenticationError):
        tokens.resolve_token(db=sqlite_db, raw=secret[:-1] + ("A" if secret[-1] != "A" else "B"))
    with pytest.raises(AuthenticationError):
        tokens.resolve_token(db=sqlite_db, raw=secret, now=datetime.now(UTC) + timedelta(days=91))
    tokens.revoke_token(db=sqlite_db, actor="alice", token_id=token.id)
    with pytest.raises(AuthenticationError):
        tokens.resolve_token(db=sqlite_db, raw=secret)
    with pytest.raises(ValidationError):
        tokens.create_token(db=sqlite_db, actor="a", username="alice", name="", scopes=["read"])
    assert actions(sqlite_db, "user:alice")[-2:] == ["token.created", "token.revoked"]
    payload = json.loads(
        sqlite_db.query("SELECT payload FROM events WHERE action = 'token.created'")[0]["payload"]
    )
    assert secret not in json.dumps(payload)


def test_require_audits_refusals(sqlite_db: Database) -> None:
    make(sqlite_db, "vera", ("viewer",))
    who = principal_for(accounts.get_account(db=sqlite_db, username="vera"), via="session")
    require(db=sqlite_db, principal=who, permission="executions:read", subject="x")
    with pytest.raises(PermissionDenied) as e:
        require(db=sqlite_db, principal=who, permission="users:manage", subject="users")
    assert e.value.http_status == 403 and "admin" in (e.value.hint or "")
    assert actions(sqlite_db, "users") == ["access.denied"]
    assert local_admin("me").can("users:manage")


def test_roles_resolver_prefers_accounts(sqlite_db: Database) -> None:
    make(sqlite_db, "eve", ("engineer",))
    make(sqlite_db, "dan", ("operator",))
    accounts.set_disabled(db=sqlite_db, actor="t", username="dan", disabled=True)
    roles_of = roles_resolver(db=sqlite_db, fallback=lambda u: ("approver",))
    assert roles_of("eve") == ("engineer", "operator")
    assert roles_of("dan") == ()
    assert roles_of("nobody") == ("approver",)
    assert "admin" in roles_of(SCHEDULER)


def test_first_admin_only_once(sqlite_db: Database) -> None:
    first = ensure_first_admin(db=sqlite_db, known=KNOWN)
    assert first and first.username == "admin"
    account = accounts.authenticate(
        db=sqlite_db, username="admin", password=first.password, policy=POLICY
    )
    assert account.roles == ("admin",)
    assert ensure_first_admin(db=sqlite_db, known=KNOWN) is None


def test_generated_passwords_are_strong_enough() -> None:
    pw = passwords.generate_password()
    passwords.check_strength(pw)
    assert passwords.generate_password() != pw


@pytest.mark.postgres
def test_accounts_on_postgresql(pg_db: Database) -> None:
    try:
        make(pg_db, "pgu", ("operator",))
        _, secret = tokens.create_token(
            db=pg_db, actor="t", username="pgu", name="x", scopes=["read"]
        )
        assert tokens.resolve_token(db=pg_db, raw=secret)[0].username == "pgu"
        with pytest.raises(AuthenticationError):
            accounts.authenticate(db=pg_db, username="pgu", password="nope", policy=POLICY)
    finally:
        pg_db.execute("DELETE FROM api_tokens")
        pg_db.execute("DELETE FROM sessions")
        pg_db.execute("DELETE FROM user_roles")
        pg_db.execute("DELETE FROM users")
