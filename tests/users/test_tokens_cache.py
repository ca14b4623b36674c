"""Verified tokens are remembered (the per-request check was most of an authenticated read),
never past a change: a token revoked, an account disabled or a role taken away, here or by
another process (the CLI), is refused or seen on the very next request; an expired one too."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from opsbook import audit
from opsbook.db import Database, open_database
from opsbook.users import accounts, tokens
from opsbook.users.errors import AuthenticationError

KNOWN = accounts.known_roles()


def _token(db: Database, days: int = 1) -> tuple[str, str]:
    accounts.create_account(
        db=db, actor="t", username="bot", roles=("operator",), known=KNOWN, password=None
    )
    token, secret = tokens.create_token(
        db=db, actor="t", username="bot", name="ci", scopes=["read"], expires_in_days=days
    )
    return token.id, secret


def test_a_verified_token_is_remembered_until_an_account_is_written(sqlite_db: Database) -> None:
    _, secret = _token(sqlite_db)
    cache = tokens.VerifiedTokens(sqlite_db)
    first = cache.resolve(secret)
    assert cache.resolve(secret) == first and cache.hits == 1
    with sqlite_db.transaction():  # any write to an account: checked again
        sqlite_db.execute("UPDATE users SET display_name = 'Bot' WHERE username = 'bot'")
    again = cache.resolve(secret)
    assert again[0].display_name == "Bot" and cache.hits == 1  # read again, not remembered
    assert cache.resolve(secret) == again and cache.hits == 2


def test_writes_elsewhere_leave_it_remembered(sqlite_db: Database) -> None:
    """Alert ingest and executions write all the time; they say nothing about tokens."""
    _, secret = _token(sqlite_db)
    cache = tokens.VerifiedTokens(sqlite_db)
    first = cache.resolve(secret)
    audit.record(db=sqlite_db, actor="t", action="test.written", subject="x", payload={})
    assert cache.resolve(secret) == first and cache.hits == 1


def test_a_revoked_token_is_refused_at_once(sqlite_db: Database) -> None:
    token_id, secret = _token(sqlite_db)
    cache = tokens.VerifiedTokens(sqlite_db)
    cache.resolve(secret)
    cache.resolve(secret)
    tokens.revoke_token(db=sqlite_db, actor="t", token_id=token_id)
    with pytest.raises(AuthenticationError):
        cache.resolve(secret)


def test_a_revocation_by_another_process_is_seen_at_once(
    sqlite_db: Database, tmp_path: Path
) -> None:
    token_id, secret = _token(sqlite_db)
    cache = tokens.VerifiedTokens(sqlite_db)
    cache.resolve(secret)
    other = open_database(sqlite_db.url)  # the CLI: a connection of its own
    try:
        tokens.revoke_token(db=other, actor="cli", token_id=token_id)
    finally:
        other.close()
    with pytest.raises(AuthenticationError):
        cache.resolve(secret)


def test_a_disabled_account_or_a_lost_role_is_seen_at_once(sqlite_db: Database) -> None:
    _, secret = _token(sqlite_db)
    cache = tokens.VerifiedTokens(sqlite_db)
    account, _ = cache.resolve(secret)
    assert account.roles == ("operator",)
    accounts.grant_role(db=sqlite_db, actor="t", username="bot", role="engineer", known=KNOWN)
    assert set(cache.resolve(secret)[0].roles) == {"operator", "engineer"}
    accounts.set_disabled(db=sqlite_db, actor="t", username="bot", disabled=True)
    with pytest.raises(AuthenticationError):
        cache.resolve(secret)


def test_an_expired_token_is_refused_even_when_remembered(sqlite_db: Database) -> None:
    _, secret = _token(sqlite_db, days=1)
    cache = tokens.VerifiedTokens(sqlite_db)
    now = datetime.now(UTC)
    cache.resolve(secret, now=now)
    cache.resolve(secret, now=now)
    assert cache.hits == 1
    with pytest.raises(AuthenticationError):
        cache.resolve(secret, now=now + timedelta(days=1, seconds=1))


def test_a_wrong_secret_for_a_known_token_is_refused(sqlite_db: Database) -> None:
    _, secret = _token(sqlite_db)
    cache = tokens.VerifiedTokens(sqlite_db)
    cache.resolve(secret)
    wrong = secret[:-4] + ("AAAA" if not secret.endswith("AAAA") else "BBBB")
    with pytest.raises(AuthenticationError):
        cache.resolve(wrong)


def test_a_remembered_token_costs_no_query_until_anything_is_committed(
    sqlite_db: Database,
) -> None:
    token_id, secret = _token(sqlite_db)
    cache = tokens.VerifiedTokens(sqlite_db)
    cache.resolve(secret)
    cache.resolve(secret)
    statements: list[str] = []
    sqlite_db.raw.set_trace_callback(statements.append)
    try:
        cache.resolve(secret)
        assert statements == [] and cache.hits == 2  # the WAL-index header vouched for it
        other = open_database(sqlite_db.url)  # another process revokes it: seen at once
        try:
            tokens.revoke_token(db=other, actor="cli", token_id=token_id)
        finally:
            other.close()
        with pytest.raises(AuthenticationError):
            cache.resolve(secret)
    finally:
        sqlite_db.raw.set_trace_callback(None)
