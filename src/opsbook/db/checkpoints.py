"""SQLite WAL checkpoints off the serving thread.

In WAL mode with ``synchronous=NORMAL`` a commit does not wait for the disk; the checkpoint
that copies the log back into the database file does (it syncs both). SQLite runs it inside
whichever commit crosses 1,000 log pages, so every few hundred requests one of them stalled
the event loop for tens of milliseconds. :class:`Checkpointer` turns that off for the
connections it is given and checkpoints from a thread of its own instead (``PASSIVE``: it
never blocks readers or writers). Other processes (the CLI) keep SQLite's default.
"""

from __future__ import annotations

import sqlite3
import threading

from opsbook.db._database import Database, _sqlite_path
from opsbook.logs import get_logger

EVERY = 1.0  # seconds between checkpoints


class Checkpointer:
    def __init__(self, db: Database, *, every: float = EVERY) -> None:
        self._db = db
        self._every = every
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.checkpoints = 0

    @property
    def active(self) -> bool:
        return self._thread is not None

    def start(self) -> None:
        """Take over checkpoints for ``db`` (SQLite files only; otherwise nothing to do)."""
        path = _sqlite_path(self._db.url)
        if self._db.dialect != "sqlite" or path.name == ":memory:" or self._thread is not None:
            return
        self.adopt(self._db)
        self._thread = threading.Thread(
            target=self._run, args=(str(path),), name="opsbook-checkpoints", daemon=True
        )
        self._thread.start()

    def adopt(self, db: Database) -> None:
        """Stop ``db`` (a connection of this process to the same file) checkpointing itself."""
        if db.dialect == "sqlite":
            db.raw.execute("PRAGMA wal_autocheckpoint=0")

    def stop(self) -> None:
        """Checkpoint one last time and give checkpoints back to SQLite."""
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join(timeout=30)
        self._thread = None
        self._db.raw.execute("PRAGMA wal_autocheckpoint=1000")

    def _run(self, path: str) -> None:
        conn = sqlite3.connect(path, isolation_level=None, timeout=30.0)
        try:
            conn.execute("PRAGMA busy_timeout=30000")
            while True:
                stopping = self._stop.wait(self._every)
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                    self.checkpoints += 1
                except sqlite3.Error as exc:  # e.g. the disk is full: try again next time
                    get_logger().warning("db.checkpoint.failed", fields={"error": str(exc)})
                if stopping:
                    return
        finally:
            conn.close()
