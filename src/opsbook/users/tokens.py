"""API tokens for automation: shown once, stored as a SHA-256 hash (the secret part is 256
random bits, so a slow hash adds nothing), limited to scopes, always expiring."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from opsbook import audit
from opsbook.db import FULL_CHECK_EVERY, Database
from opsbook.errors import NotFoundError, ValidationError
from opsbook.users.access import Principal, principal_for
from opsbook.users.accounts import Account, get_account, get_account_by_id, jit_roles, parse_ts
from opsbook.users.errors import AuthenticationError
from opsbook.users.roles import SCOPES

PREFIX = "obk"
MAX_DAYS = 366
DEFAULT_DAYS = 90
TOUCH_EVERY = timedelta(seconds=60)
_FORMAT = re.compile(r"^obk_([0-9a-f]{12})_([A-Za-z0-9_-]{20,100})$")
INVALID = "the API token is unknown, expired or revoked"


@dataclass(frozen=True)
class ApiToken:
    id: str
    username: str
    name: str
    scopes: tuple[str, ...]
    created_at: str
    expires_at: str
    last_used_at: str | None
    revoked_at: str | None
    created_by: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "user": self.username,
            "name": self.name,
            "scopes": list(self.scopes),
            "created_at": self.created_at,
            "expires_at": self.expires_at,
            "last_used_at": self.last_used_at,
            "revoked_at": self.revoked_at,
            "created_by": self.created_by,
        }


def _iso(when: datetime) -> str:
    return when.isoformat(timespec="microseconds").replace("+00:00", "Z")


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def check_scopes(scopes: Sequence[str]) -> tuple[str, ...]:
    if not scopes:
        raise ValidationError(
            "a token needs at least one scope", field="scopes", hint=f"scopes: {', '.join(SCOPES)}"
        )
    for scope in scopes:
        if scope not in SCOPES:
            raise ValidationError(
                f"unknown scope {str(scope)[:40]!r}",
                field="scopes",
                hint=f"scopes: {', '.join(SCOPES)}",
            )
    return tuple(dict.fromkeys(scopes))


def create_token(
    *,
    db: Database,
    actor: str,
    username: str,
    name: str,
    scopes: Sequence[str],
    expires_in_days: int = DEFAULT_DAYS,
    now: datetime | None = None,
) -> tuple[ApiToken, str]:
    """Create a token for ``username``; returns it and the secret string (never stored)."""
    name = name.strip()
    if not 1 <= len(name) <= 80:
        raise ValidationError(
            "a token needs a name of 1-80 characters", field="name", hint="e.g. ci-deploy"
        )
    chosen = check_scopes(scopes)
    if not 1 <= expires_in_days <= MAX_DAYS:
        raise ValidationError(
            f"expires_in_days must be between 1 and {MAX_DAYS}",
            field="expires_in_days",
            hint="tokens always expire; create a new one before this one does",
        )
    when = now or datetime.now(UTC)
    token_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    with db.transaction():
        account = get_account(db=db, username=username)
        db.execute(
            "INSERT INTO api_tokens (id, user_id, name, token_hash, scopes, created_at,"
            " expires_at, created_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                token_id,
                account.id,
                name,
                _digest(secret),
                json.dumps(list(chosen)),
                _iso(when),
                _iso(when + timedelta(days=expires_in_days)),
                actor,
            ),
        )
        audit.record(
            db=db,
            actor=actor,
            action="token.created",
            subject=f"user:{username}",
            payload={
                "token": token_id,
                "name": name,
                "scopes": list(chosen),
                "expires_in_days": expires_in_days,
            },
        )
    token = get_token(db=db, token_id=token_id)
    return token, f"{PREFIX}_{token_id}_{secret}"


def _token(row: dict[str, Any]) -> ApiToken:
    return ApiToken(
        id=str(row["id"]),
        username=str(row["username"]),
        name=str(row["name"]),
        scopes=tuple(json.loads(row["scopes"])),
        created_at=str(row["created_at"]),
        expires_at=str(row["expires_at"]),
        last_used_at=row["last_used_at"],
        revoked_at=row["revoked_at"],
        created_by=str(row["created_by"]),
    )


_SELECT = (
    "SELECT t.id, t.name, t.scopes, t.created_at, t.expires_at, t.last_used_at, t.revoked_at,"
    " t.created_by, t.user_id, t.token_hash, u.username FROM api_tokens t"
    " JOIN users u ON u.id = t.user_id"
)


def get_token(*, db: Database, token_id: str) -> ApiToken:
    row = db.one(_SELECT + " WHERE t.id = ?", (token_id,))
    if row is None:
        raise NotFoundError(f"no API token {token_id[:40]!r}", hint="list them with tokens list")
    return _token(row)


def list_tokens(*, db: Database, username: str | None = None) -> list[ApiToken]:
    if username is None:
        rows = db.query(_SELECT + " ORDER BY t.created_at DESC")
    else:
        rows = db.query(_SELECT + " WHERE u.username = ? ORDER BY t.created_at DESC", (username,))
    return [_token(r) for r in rows]


def revoke_token(*, db: Database, actor: str, token_id: str) -> ApiToken:
    with db.transaction():
        token = get_token(db=db, token_id=token_id)
        if token.revoked_at is None:
            db.execute(
                "UPDATE api_tokens SET revoked_at = ? WHERE id = ?",
                (_iso(datetime.now(UTC)), token_id),
            )
            audit.record(
                db=db,
                actor=actor,
                action="token.revoked",
                subject=f"user:{token.username}",
                payload={"token": token_id, "name": token.name},
            )
    return get_token(db=db, token_id=token_id)


def resolve_token(
    *, db: Database, raw: str, now: datetime | None = None
) -> tuple[Account, ApiToken]:
    """The account and token for a presented token string, or AuthenticationError."""
    m = _FORMAT.match(raw.strip())
    if not m:
        raise AuthenticationError(INVALID, hint="send Authorization: Bearer obk_…")
    row = db.one(_SELECT + " WHERE t.id = ?", (m.group(1),))
    when = now or datetime.now(UTC)
    if (
        row is None
        or not hmac.compare_digest(str(row["token_hash"]), _digest(m.group(2)))
        or row["revoked_at"]
        or parse_ts(str(row["expires_at"])) <= when
    ):
        raise AuthenticationError(INVALID, hint="create a new token with `opsbook tokens create`")
    account = get_account_by_id(db=db, user_id=int(row["user_id"]))
    if account is None or account.disabled:
        raise AuthenticationError(INVALID, hint="the token's account is disabled")
    last = row["last_used_at"]
    if last is None or when - parse_ts(str(last)) >= TOUCH_EVERY:
        db.execute("UPDATE api_tokens SET last_used_at = ? WHERE id = ?", (_iso(when), row["id"]))
    return account, _token(row)


TTL = 30.0  # seconds a verified token is remembered at most (below TOUCH_EVERY)
CACHE_SIZE = 1024


@dataclass(frozen=True)
class _Verified:
    account: Account
    token: ApiToken
    principal: Principal
    expires: datetime
    until: float  # time.monotonic() after which the token is checked again


#: What makes a remembered token worth checking again when this process writes it: TEMP
#: triggers (this connection only; no schema change) count writes to these tables.
_WATCHED = (
    ("api_tokens", "INSERT"),
    ("api_tokens", "DELETE"),
    ("api_tokens", "UPDATE OF revoked_at, expires_at, token_hash, user_id, scopes"),
    ("users", "INSERT"),
    ("users", "DELETE"),
    ("users", "UPDATE"),
    ("user_roles", "INSERT"),
    ("user_roles", "DELETE"),
    ("user_roles", "UPDATE"),
    ("jit_grants", "INSERT"),
    ("jit_grants", "UPDATE"),
)


class VerifiedTokens:
    """Tokens already checked by :func:`resolve_token`, remembered by the SHA-256 of the whole
    presented string (never the string itself) for at most ``ttl`` seconds.

    All of them are forgotten as soon as another connection (the CLI, another replica)
    commits anything (SQLite's ``PRAGMA data_version``), or this connection writes a token,
    an account or a role (counted by TEMP triggers on this connection: alert ingest and
    executions, which write all the time, leave them be). A revoked token, a disabled
    account or a changed role is therefore refused or seen on the very next request; the
    token's expiry is checked on every request. On PostgreSQL, or inside a transaction,
    every request is checked. One per process, used from one thread.
    """

    def __init__(self, db: Database, *, ttl: float = TTL, size: int = CACHE_SIZE) -> None:
        self._db = db
        self._ttl = ttl
        self._size = size
        self._watching = False
        self._marker: tuple[int, int] | None = None
        self._stamped: tuple[int, int] | None = None  # the last full check's stamp
        self._header: bytes | None = None  # the WAL-index header read just before it
        self._header_until = 0.0
        self._entries: dict[bytes, _Verified] = {}
        self.hits = 0
        self.misses = 0

    def _stamp(self) -> tuple[int, int] | None:
        """(data_version, writes of this connection to the watched tables), or None."""
        if self._db.dialect != "sqlite" or self._db.in_transaction:
            return None
        header = self._db.wal_index_header()
        if (
            header is not None
            and header == self._header
            and self._stamped is not None
            and time.monotonic() < self._header_until
        ):
            return self._stamped  # nothing committed anywhere since the last full check
        raw = self._db.raw
        try:
            if not self._watching:
                raw.execute("CREATE TEMP TABLE IF NOT EXISTS opsbook_auth_writes (n INTEGER)")
                raw.execute(
                    "INSERT INTO temp.opsbook_auth_writes (n) SELECT 0"
                    " WHERE NOT EXISTS (SELECT 1 FROM temp.opsbook_auth_writes)"
                )
                for i, (table, event) in enumerate(_WATCHED):
                    raw.execute(  # the names are the constants above
                        f"CREATE TEMP TRIGGER IF NOT EXISTS opsbook_auth_write_{i}"  # noqa: S608
                        f" AFTER {event} ON main.{table}"
                        " BEGIN UPDATE opsbook_auth_writes SET n = n + 1; END"
                    )
                self._watching = True
            row = raw.execute(
                "SELECT d.data_version, w.n FROM pragma_data_version() AS d,"
                " temp.opsbook_auth_writes AS w"
            ).fetchone()
        except sqlite3.Error:
            return None
        if not row:
            return None
        # The header was read before the query: a commit in between is seen next time.
        self._stamped = (int(row[0]), int(row[1]))
        self._header, self._header_until = header, time.monotonic() + FULL_CHECK_EVERY
        return self._stamped

    def resolve(self, raw: str, *, now: datetime | None = None) -> tuple[Account, ApiToken]:
        """Like :func:`resolve_token`, from memory when nothing changed since it was checked."""
        found = self._verified(raw, now or datetime.now(UTC))
        return found.account, found.token

    def principal(self, raw: str, *, now: datetime | None = None) -> Principal:
        """The caller presenting ``raw``, or AuthenticationError."""
        return self._verified(raw, now or datetime.now(UTC)).principal

    def _verified(self, raw: str, when: datetime) -> _Verified:
        key = hashlib.sha256(raw.encode()).digest()
        marker = self._stamp()
        if marker is not None and marker == self._marker:
            hit = self._entries.get(key)
            if hit is not None and when < hit.expires and time.monotonic() < hit.until:
                self.hits += 1
                return hit
        elif self._entries:
            self._entries.clear()
        self.misses += 1
        account, token = resolve_token(db=self._db, raw=raw, now=when)
        jit, jit_ends = jit_roles(db=self._db, username=account.username, now=when)
        expires = parse_ts(token.expires_at)
        found = _Verified(
            account,
            token,
            principal_for(
                account, via="token", scopes=token.scopes, token_id=token.id, extra_roles=jit
            ),
            min(expires, jit_ends) if jit_ends else expires,  # forgotten when a JIT grant ends
            time.monotonic() + self._ttl,
        )
        # Remember it only if nothing changed while it was checked.
        if marker is not None and self._stamp() == marker:
            if marker != self._marker:
                self._entries.clear()
                self._marker = marker
            if len(self._entries) >= self._size:
                self._entries.clear()
            self._entries[key] = found
        return found
