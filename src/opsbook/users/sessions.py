"""Console sessions: a random cookie value (only its SHA-256 is stored), a CSRF token, an
absolute lifetime and an idle timeout. Stored in the database so every replica sees them and
signing out (or disabling an account) ends them everywhere."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from opsbook import audit
from opsbook.db import Database
from opsbook.users.accounts import Account, get_account_by_id, parse_ts

#: last_seen_at is written at most this often per session (not on every request).
TOUCH_EVERY = timedelta(seconds=60)


@dataclass(frozen=True)
class Session:
    account: Account
    csrf_token: str
    method: str
    created_at: str
    expires_at: str


def _digest(raw: str) -> str:
    return hashlib.sha256(raw.encode("utf-8", "replace")).hexdigest()


def _iso(when: datetime) -> str:
    return when.isoformat(timespec="microseconds").replace("+00:00", "Z")


def create_session(
    *, db: Database, account: Account, method: str, ttl: timedelta, now: datetime | None = None
) -> tuple[str, Session]:
    """Start a session; returns the cookie value (shown to the browser only) and the session."""
    when = now or datetime.now(UTC)
    raw = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(32)
    db.execute(
        "INSERT INTO sessions (id_hash, user_id, csrf_token, method, created_at, expires_at,"
        " last_seen_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (_digest(raw), account.id, csrf, method, _iso(when), _iso(when + ttl), _iso(when)),
    )
    return raw, Session(account, csrf, method, _iso(when), _iso(when + ttl))


def resolve_session(
    *, db: Database, raw: str, idle_timeout: timedelta, now: datetime | None = None
) -> Session | None:
    """The live session for a cookie value, or None (unknown, expired, idle too long, or the
    account was disabled). Expired sessions are deleted when met."""
    if not raw or len(raw) > 200:
        return None
    when = now or datetime.now(UTC)
    key = _digest(raw)
    row = db.one("SELECT * FROM sessions WHERE id_hash = ?", (key,))
    if row is None:
        return None
    last_seen = parse_ts(str(row["last_seen_at"]))
    if parse_ts(str(row["expires_at"])) <= when or last_seen + idle_timeout <= when:
        db.execute("DELETE FROM sessions WHERE id_hash = ?", (key,))
        return None
    account = get_account_by_id(db=db, user_id=int(row["user_id"]))
    if account is None or account.disabled:
        return None
    if when - last_seen >= TOUCH_EVERY:
        db.execute("UPDATE sessions SET last_seen_at = ? WHERE id_hash = ?", (_iso(when), key))
    return Session(
        account,
        str(row["csrf_token"]),
        str(row["method"]),
        str(row["created_at"]),
        str(row["expires_at"]),
    )


def end_session(*, db: Database, raw: str, actor: str) -> None:
    with db.transaction():
        n = db.execute("DELETE FROM sessions WHERE id_hash = ?", (_digest(raw),))
        if n:
            audit.record(db=db, actor=actor, action="auth.signout", subject=f"user:{actor}")


def purge_expired(*, db: Database, now: datetime | None = None) -> int:
    when = _iso(now or datetime.now(UTC))
    n = db.execute("DELETE FROM sessions WHERE expires_at <= ?", (when,))
    n += db.execute("DELETE FROM auth_states WHERE expires_at <= ?", (when,))
    return n
