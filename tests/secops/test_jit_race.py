"""Just-in-time grants with two writers on one database (two `opsbook serve` replicas, or a
replica and the CLI): each grant is approved once and ended once, with one audit record each,
whoever gets there first (ADR 0017 §6). Real SQLite and PostgreSQL, two connections; the other
writer acts between this one's read and its write (a deterministic race)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest

from opsbook.db import Database, open_database
from opsbook.errors import ConflictError
from opsbook.secops import jit
from opsbook.users.accounts import known_roles

ROLES = known_roles()
SECURITY = ("security",)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A migrated database of the test's own (SQLite file, or a new PostgreSQL database)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'state.db'}"
        return
    import psycopg

    server: str = request.getfixturevalue("pg_url")
    name = f"jit_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    try:
        yield server.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def dbs(url: str) -> Iterator[tuple[Database, Database]]:
    """Replica A's connection and replica B's."""
    a = open_database(url)
    b = open_database(url)
    try:
        yield a, b
    finally:
        a.close()
        b.close()


class _ReadsThen:
    """B's connection: its first read of the grants table runs ``then()`` (replica A's whole
    action, on A's connection) before answering, so B acts on what it read before A wrote."""

    def __init__(self, db: Database, then: Callable[[], object]) -> None:
        self._db, self._then = db, then

    def _after(self, sql: str) -> None:
        if "FROM jit_grants" in sql and self._then is not None:
            then, self._then = self._then, None
            then()

    def one(self, sql: str, params: Sequence[Any] = ()) -> dict[str, Any] | None:
        row = self._db.one(sql, params)
        self._after(sql)
        return row

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        rows = self._db.query(sql, params)
        self._after(sql)
        return rows

    def __getattr__(self, name: str) -> Any:
        return getattr(self._db, name)


def _racing(b: Database, then: Callable[[], object]) -> Database:
    return cast(Database, _ReadsThen(b, then))


def _actions(db: Database, action: str) -> list[dict[str, Any]]:
    return db.query("SELECT actor, payload FROM events WHERE action = ?", (action,))


def _active_grant(db: Database, *, at: datetime) -> str:
    g = jit.request(
        db, username="olga", role="admin", duration_s=3600, reason="INC-7", known_roles=ROLES
    )
    jit.approve(db, grant=g["ref"], actor="sam", roles=SECURITY, now=at)
    return str(g["ref"])


def test_two_approvers_at_once_approve_once(dbs: tuple[Database, Database]) -> None:
    a, b = dbs
    g = jit.request(
        a, username="olga", role="admin", duration_s=3600, reason="INC-7", known_roles=ROLES
    )

    def replica_a() -> None:
        jit.approve(a, grant=g["ref"], actor="sam", roles=SECURITY)

    with pytest.raises(ConflictError, match="is active, not waiting for approval"):
        jit.approve(_racing(b, replica_a), grant=g["ref"], actor="ada", roles=SECURITY)
    assert [r["actor"] for r in _actions(a, "access.jit.approved")] == ["sam"]
    assert jit.get(a, g["ref"])["approved_by"] == "sam"


def test_a_rejection_racing_an_approval_writes_one_record(dbs: tuple[Database, Database]) -> None:
    a, b = dbs
    g = jit.request(
        a, username="olga", role="admin", duration_s=3600, reason="INC-7", known_roles=ROLES
    )

    def replica_a() -> None:
        jit.approve(a, grant=g["ref"], actor="sam", roles=SECURITY)

    # B read it pending and rejects it; A approved it in between: B's rejection is refused
    # (revoking an approved grant is a new decision, not this one) and nothing is recorded.
    with pytest.raises(ConflictError, match="already active"):
        jit.revoke(_racing(b, replica_a), grant=g["ref"], actor="ada")
    assert _actions(a, "access.jit.rejected") == []
    assert len(_actions(a, "access.jit.approved")) == 1
    assert jit.get(a, g["ref"])["state"] == "active"


def test_a_revocation_racing_the_expiry_ends_the_grant_once(
    dbs: tuple[Database, Database],
) -> None:
    a, b = dbs
    started = datetime.now(UTC) - timedelta(hours=2)
    grant = _active_grant(a, at=started)  # expired an hour ago, still `active` in the table

    def replica_a() -> None:
        assert jit.expire(a) == [grant]

    with pytest.raises(ConflictError, match="already expired"):
        jit.revoke(_racing(b, replica_a), grant=grant, actor="ada")
    ended = _actions(a, "access.jit.ended")
    assert len(ended) == 1 and ended[0]["actor"] == "opsbook"
    assert jit.get(a, grant)["state"] == "expired"


def test_two_expiry_passes_at_once_end_the_grant_once(
    dbs: tuple[Database, Database], url: str
) -> None:
    """B's pass read the grant as active in its transaction; A's pass ended it before B's
    UPDATE. SQLite cannot interleave here (BEGIN IMMEDIATE serialises the two passes), so
    SQLite runs them one after the other."""
    a, b = dbs
    started = datetime.now(UTC) - timedelta(hours=2)
    grant = _active_grant(a, at=started)
    if url.startswith("sqlite"):
        assert jit.expire(a) == [grant]
        assert jit.expire(b) == []
    else:

        def replica_a() -> None:
            assert jit.expire(a) == [grant]

        assert jit.expire(_racing(b, replica_a)) == []
    assert len(_actions(a, "access.jit.ended")) == 1
