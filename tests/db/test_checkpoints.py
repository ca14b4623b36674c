"""WAL checkpoints run in a thread of their own, not inside a serving thread's commit."""

from __future__ import annotations

import time
from pathlib import Path

from opsbook.db import open_database
from opsbook.db.checkpoints import Checkpointer


def _autocheckpoint(db) -> int:  # type: ignore[no-untyped-def]
    return int(db.raw.execute("PRAGMA wal_autocheckpoint").fetchone()[0])


def test_the_thread_checkpoints_what_the_connection_writes(tmp_path: Path) -> None:
    path = tmp_path / "opsbook.db"
    db = open_database(f"sqlite:///{path}")
    db.raw.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # start from an empty log
    checkpointer = Checkpointer(db, every=0.05)
    checkpointer.start()
    try:
        assert _autocheckpoint(db) == 0  # commits no longer checkpoint themselves
        before = path.stat().st_size
        with db.transaction():
            db.execute("CREATE TABLE filler (x TEXT)")
            for _ in range(300):
                db.execute("INSERT INTO filler VALUES (?)", ("x" * 4000,))
        deadline = time.monotonic() + 10
        while path.stat().st_size <= before + 300 * 4000 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert path.stat().st_size > before + 300 * 4000  # the pages reached the database file
        assert checkpointer.checkpoints >= 1
    finally:
        checkpointer.stop()
    assert _autocheckpoint(db) == 1000  # SQLite's default is back
    db.close()


def test_nothing_to_do_for_an_in_memory_database() -> None:
    db = open_database("sqlite:///:memory:")
    checkpointer = Checkpointer(db, every=0.05)
    checkpointer.start()
    assert not checkpointer.active
    checkpointer.stop()
    db.close()
