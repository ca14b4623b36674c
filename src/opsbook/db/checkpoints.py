"""SQLite WAL checkpoints off the serving thread, with the log kept small.

In WAL mode with ``synchronous=NORMAL`` a commit does not wait for the disk; the checkpoint
that copies the log back into the database file does (it syncs both). SQLite runs it inside
whichever commit crosses 1,000 log pages, so every few hundred requests one of them stalled
the event loop for tens of milliseconds. :class:`Checkpointer` moves that to a thread of its
own, and keeps the ``-wal`` file bounded (issue 18: it reached 436-695 MB after a minute of
sustained ingest and stayed there):

- Every ``every`` seconds, ``PASSIVE``: copy what can be copied, blocking no one. Under
  sustained writes it never *finishes* (new frames arrive while it copies), and SQLite only
  starts the log again from its beginning after a finished checkpoint.
- Past ``limit`` bytes, ``TRUNCATE``: it holds writers off while it copies the rest, then
  empties the file. It never waits for the lock: if a commit is under way it tries again
  at the next look (waiting, it would hold the checkpoint lock and keep the backstop out).
- The backstop: a commit of the adopted connection that leaves the log past
  ``BACKSTOP × limit`` empties it there and then (``TRUNCATE``, waiting for the thread's
  checkpoint if one is running), which stalls that one commit. Writes can outrun the disk's
  checkpoints, and the thread can wait a long time for the GIL while the event loop is busy:
  this is what bounds the log then. It costs every commit one ``stat`` of the ``-wal`` file.
- When nothing was written for ``idle_after`` seconds, ``TRUNCATE``; and at :meth:`stop`.
  The server closes its connection after that, and SQLite removes ``-wal`` and ``-shm``.

The thread notices writes from the ``-wal`` file's size and time, never through SQLite: a
statement on its connection holds a read snapshot until it is reset, which may be long after
(the thread waits for the GIL), and a snapshot keeps every other checkpoint from finishing.
Other processes (the CLI) keep SQLite's defaults.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

from opsbook.db._database import Database, _sqlite_path
from opsbook.logs import get_logger

EVERY = 0.05  # seconds between looks at the log
LIMIT = 16 * 1024 * 1024  # bytes of log past which the thread empties it
IDLE_AFTER = 2.0  # seconds without a commit after which the log is truncated
BACKSTOP = 3  # times the limit: a commit that leaves more log than this empties it itself
BACKSTOP_WAIT = 5.0  # seconds the backstop waits for the thread's checkpoint at most
BUSY_MS = 0  # a checkpoint never waits for a writer or reader: it tries again next time


class Checkpointer:
    def __init__(
        self,
        db: Database,
        *,
        every: float = EVERY,
        limit: int = LIMIT,
        idle_after: float = IDLE_AFTER,
    ) -> None:
        self._db = db
        self._every = every
        self._limit = limit
        self._idle_after = idle_after
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._wal: Path | None = None
        self.checkpoints = 0  # checkpoints run (any mode)
        self.resets = 0  # checkpoints that emptied a log past the limit
        self.truncations = 0  # checkpoints that emptied an idle log
        self.backstops = 0  # commits that emptied the log themselves
        self.peak_wal_bytes = 0  # largest -wal file seen by the thread

    @property
    def active(self) -> bool:
        return self._thread is not None

    def start(self) -> None:
        """Take over checkpoints for ``db`` (SQLite files only; otherwise nothing to do)."""
        path = _sqlite_path(self._db.url)
        if self._db.dialect != "sqlite" or path.name == ":memory:" or self._thread is not None:
            return
        self._wal = Path(f"{path}-wal")
        self.adopt(self._db)
        self._thread = threading.Thread(
            target=self._run, args=(str(path),), name="opsbook-checkpoints", daemon=True
        )
        self._thread.start()

    def adopt(self, db: Database) -> None:
        """Stop ``db`` (a connection of this process to the same file) checkpointing by
        itself, except past the backstop."""
        if db.dialect != "sqlite":
            return
        db.raw.execute("PRAGMA wal_autocheckpoint=0")
        db.raw.execute(f"PRAGMA journal_size_limit={int(self._limit)}")
        wal = Path(f"{_sqlite_path(db.url)}-wal")
        hard = BACKSTOP * self._limit

        def backstop() -> None:
            try:
                if wal.stat().st_size < hard:
                    return
            except OSError:
                return
            self.backstops += 1
            # SQLite does not wait for another checkpoint (the thread's) to finish: retry.
            deadline = time.monotonic() + BACKSTOP_WAIT
            while True:
                try:
                    if not db.raw.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]:
                        return
                except sqlite3.OperationalError:
                    pass  # SQLITE_BUSY: the thread is checkpointing
                if time.monotonic() > deadline:
                    get_logger().warning("db.checkpoint.busy", fields={"wal_bytes": hard})
                    return
                time.sleep(0.001)

        db.after_commit = backstop

    def stop(self) -> None:
        """Truncate the log one last time and give checkpoints back to SQLite."""
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join(timeout=30)
        self._thread = None
        self._db.after_commit = None
        self._db.raw.execute("PRAGMA wal_autocheckpoint=1000")

    def _wal_stamp(self) -> tuple[int, int]:
        """The ``-wal`` file's size and modification time ((0, 0) when there is none)."""
        try:
            st = self._wal.stat() if self._wal is not None else None
        except OSError:
            return (0, 0)
        return (st.st_size, st.st_mtime_ns) if st is not None else (0, 0)

    def wal_bytes(self) -> int:
        """The size of the ``-wal`` file now (0 when there is none)."""
        try:
            return self._wal.stat().st_size if self._wal is not None else 0
        except OSError:
            return 0

    def _run(self, path: str) -> None:
        conn = sqlite3.connect(path, isolation_level=None, timeout=BUSY_MS / 1000)
        try:
            conn.execute(f"PRAGMA busy_timeout={BUSY_MS}")
            conn.execute(f"PRAGMA journal_size_limit={int(self._limit)}")
            version = self._wal_stamp()
            last_write = time.monotonic()
            truncated = False
            while True:
                stopping = self._stop.wait(self._every)
                now = time.monotonic()
                seen = self._wal_stamp()
                if seen != version:
                    version, last_write, truncated = seen, now, False
                self.peak_wal_bytes = max(self.peak_wal_bytes, seen[0])
                if stopping:
                    self._checkpoint(conn, "TRUNCATE")
                    return
                if not truncated and seen[0] and now - last_write >= self._idle_after:
                    truncated = self._checkpoint(conn, "TRUNCATE")
                elif seen[0] >= BACKSTOP * self._limit:
                    pass  # the next commit empties it: a checkpoint here would be in its way
                elif seen[0] >= self._limit:
                    self._checkpoint(conn, "TRUNCATE", limit=True)
                else:
                    self._checkpoint(conn, "PASSIVE")
                version = self._wal_stamp()  # this thread's own TRUNCATE is not a write
        finally:
            conn.close()

    def _checkpoint(self, conn: sqlite3.Connection, mode: str, *, limit: bool = False) -> bool:
        """Run one checkpoint; True when it finished (no reader or writer in the way)."""
        try:
            busy = conn.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()[0]
        except sqlite3.Error as exc:  # e.g. the disk is full: try again next time
            get_logger().warning("db.checkpoint.failed", fields={"mode": mode, "error": str(exc)})
            return False
        self.checkpoints += 1
        if busy:
            return False
        if limit:
            self.resets += 1
        elif mode == "TRUNCATE":
            self.truncations += 1
        return True
