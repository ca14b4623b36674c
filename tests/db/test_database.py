from __future__ import annotations

from pathlib import Path

import pytest

from opsbook.db import Database, open_database
from opsbook.db._database import SCHEMA_HEAD, current_revision
from opsbook.errors import DatabaseError


def test_sqlite_is_created_migrated_and_in_wal_mode(tmp_path: Path) -> None:
    db = open_database(f"sqlite:///{tmp_path / 'a' / 'opsbook.db'}")
    assert current_revision(db) == SCHEMA_HEAD
    assert db.one("PRAGMA journal_mode")["journal_mode"] == "wal"  # type: ignore[index]
    db.close()


def test_schema_head_matches_the_newest_migration() -> None:
    versions = Path(__file__).parents[2] / "src/opsbook/db/migrations/versions"
    newest = sorted(p.stem.split("_")[0] for p in versions.glob("*.py"))[-1]
    assert newest == SCHEMA_HEAD


def test_transaction_rolls_back_on_error(sqlite_db) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(RuntimeError), sqlite_db.transaction():
        sqlite_db.execute("UPDATE audit_head SET last_hash = 'x' WHERE id = 1")
        raise RuntimeError("boom")
    assert sqlite_db.one("SELECT last_hash FROM audit_head")["last_hash"] == ""


def test_unopenable_database_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(DatabaseError) as info:
        open_database(f"sqlite:///{blocker / 'sub' / 'opsbook.db'}")
    assert "cannot open the database" in info.value.message
    assert info.value.exit_code == 2


def test_unsupported_url_is_refused() -> None:
    with pytest.raises(DatabaseError, match="unsupported database URL"):
        open_database("mysql://x@y/z")


@pytest.mark.postgres
def test_postgres_is_migrated(pg_db) -> None:  # type: ignore[no-untyped-def]
    assert current_revision(pg_db) == SCHEMA_HEAD
    assert pg_db.one("SELECT last_id FROM audit_head WHERE id = 1")["last_id"] == 0


@pytest.mark.postgres
def test_postgres_unreachable_is_a_clear_error() -> None:
    from tests.conftest import free_port

    with pytest.raises(DatabaseError, match="cannot connect to PostgreSQL"):
        open_database(f"postgresql://nobody@127.0.0.1:{free_port()}/none")


def test_processes_opening_a_new_database_at_once_migrate_it_once(tmp_path: Path) -> None:
    """A CLI and `opsbook serve` starting together on a fresh workspace: no "table already
    exists", every process ends with the schema at head."""
    import subprocess
    import sys

    url = f"sqlite:///{tmp_path / 'state' / 'opsbook.db'}"
    code = (
        "import sys\n"
        "from opsbook.db import open_database\n"
        "from opsbook.db._database import SCHEMA_HEAD, current_revision\n"
        "db = open_database(sys.argv[1])\n"
        "assert current_revision(db) == SCHEMA_HEAD\n"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code, url], stderr=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], errors


def test_change_marker_moves_on_own_writes_and_other_connections_commits(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'opsbook.db'}"
    db, other = open_database(url), open_database(url)
    try:
        first = db.change_marker()
        assert first is not None and db.change_marker() == first  # reading changes nothing
        db.execute("UPDATE audit_head SET last_hash = 'a' WHERE id = 1")  # own autocommit
        second = db.change_marker()
        assert second != first
        with other.transaction():
            other.execute("UPDATE audit_head SET last_hash = 'b' WHERE id = 1")
        third = db.change_marker()
        assert third not in (first, second)
        with db.transaction():
            assert db.change_marker() is None  # uncommitted work is never a stable state
    finally:
        db.close()
        other.close()


def test_an_unchanged_marker_is_vouched_for_without_a_query_until_anyone_commits(
    tmp_path: Path,
) -> None:
    """The WAL-index header (the -shm file) moves on every commit by any connection; while it
    stays the same the marker is given without asking SQLite."""
    url = f"sqlite:///{tmp_path / 'opsbook.db'}"
    db, other = open_database(url), open_database(url)
    statements: list[str] = []
    db.raw.set_trace_callback(statements.append)
    try:
        first = db.change_marker()
        header = db.wal_index_header()
        assert header is not None and len(header) == 48
        statements.clear()
        assert db.change_marker() == first and db.wal_index_header() == header
        assert statements == []  # no query: nothing was committed anywhere
        with other.transaction():
            other.execute("UPDATE audit_head SET last_hash = 'b' WHERE id = 1")
        assert db.wal_index_header() != header
        moved = db.change_marker()
        assert moved != first and statements == ["PRAGMA data_version"]
    finally:
        db.close()
        other.close()


_EVENT = (
    "INSERT INTO events (ts, actor, action, subject, payload, payload_digest, prev_hash, hash)"
    " VALUES ('t', 'a', 'b', 'c', '{}', 'd', 'p', 'h')"
)


@pytest.mark.postgres
def test_postgres_change_marker_is_the_snapshot(pg_db: Database) -> None:
    """Stable while nothing commits (reads, an open writer elsewhere); moves on any commit,
    this connection's or another's (ADR 0017 §7); None inside a transaction."""
    other = open_database(pg_db.url)
    try:
        first = pg_db.change_marker()
        assert first is not None
        pg_db.one("SELECT COUNT(*) AS n FROM events")
        assert pg_db.change_marker() == first  # reading changes nothing
        with other.transaction():
            other.execute(_EVENT)
            during = pg_db.change_marker()  # the writer has not committed
            assert during is not None
        after = pg_db.change_marker()
        assert after not in (first, during)  # its commit is seen
        pg_db.execute(_EVENT)  # this connection's own write (autocommit)
        assert pg_db.change_marker() not in (first, during, after)
        with pg_db.transaction():
            assert pg_db.change_marker() is None
    finally:
        other.close()
