"""ReadCache: answers are reused only while the database is unchanged (ADR 0008)."""

from __future__ import annotations

from pathlib import Path

import pytest

from opsbook.db import Database, open_database
from opsbook.executions.readcache import ReadCache


def _events(db: Database) -> int:
    row = db.one("SELECT COUNT(*) AS n FROM events")
    assert row is not None
    return int(row["n"])


def test_reuses_until_any_write_then_recomputes(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'opsbook.db'}"
    db, other = open_database(url), open_database(url)
    reads = ReadCache(db, size=2)
    calls: list[str] = []

    def count() -> int:
        calls.append("x")
        return _events(db)

    try:
        assert reads.get("n", count) == 0
        assert reads.get("n", count) == 0
        assert len(calls) == 1 and reads.hits == 1
        with other.transaction():  # another process's commit
            other.execute(
                "INSERT INTO events (ts, actor, action, subject, payload, payload_digest,"
                " prev_hash, hash) VALUES ('t', 'a', 'b', 'c', '{}', 'd', 'p', 'h')"
            )
        assert reads.get("n", count) == 1
        db.execute("DELETE FROM events")  # this connection's own write
        assert reads.get("n", count) == 0
        assert len(calls) == 3
        # bounded: the least recently used key goes first
        reads.get("a", lambda: 1)
        reads.get("b", lambda: 2)
        assert reads.get("n", lambda: -1) == -1
    finally:
        db.close()
        other.close()


def test_nothing_is_cached_inside_a_transaction(tmp_path: Path) -> None:
    db = open_database(f"sqlite:///{tmp_path / 'opsbook.db'}")
    reads = ReadCache(db)
    try:
        with db.transaction():
            assert reads.get("k", lambda: 1) == 1
            assert reads.get("k", lambda: 2) == 2
    finally:
        db.close()


_EVENT = (
    "INSERT INTO events (ts, actor, action, subject, payload, payload_digest, prev_hash, hash)"
    " VALUES ('t', 'a', 'b', 'c', '{}', 'd', 'p', 'h')"
)


@pytest.mark.postgres
def test_postgresql_answers_are_reused_until_another_connection_commits(pg_db: Database) -> None:
    """Two replicas on one PostgreSQL: a write through the other one is seen by the next get."""
    other = open_database(pg_db.url)
    reads = ReadCache(pg_db)

    def count() -> int:
        return _events(pg_db)

    try:
        assert reads.get("n", count) == 0
        assert reads.get("n", count) == 0
        assert reads.hits == 1  # cached: nothing committed in between
        other.execute(_EVENT)  # the other replica's commit
        assert reads.get("n", count) == 1
    finally:
        other.close()


@pytest.mark.postgres
def test_postgresql_a_commit_during_the_computation_is_not_cached(pg_db: Database) -> None:
    other = open_database(pg_db.url)
    reads = ReadCache(pg_db)

    def count_then_other_commits() -> int:
        n = _events(pg_db)
        other.execute(_EVENT)  # commits after the read, before the answer is stored
        return n

    try:
        assert reads.get("n", count_then_other_commits) == 0  # a stale answer, not stored
        assert reads.get("n", lambda: _events(pg_db)) == 1  # recomputed, not the stale 0
    finally:
        other.close()
