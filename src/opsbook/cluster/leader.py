"""One leader among ``opsbook serve`` replicas for the background work that has no per-item
claim or is wasteful to run twice (ADR 0017 §6): monitoring probes and housekeeping, security
passes, backups.

PostgreSQL: a session advisory lock, ``pg_try_advisory_lock(key)``, on a dedicated connection
with TCP keepalives and a TCP user timeout on both ends (the client notices a lost server, the
server drops a vanished client and its lock in ~30 s; a killed holder loses it at once: the
lock goes with the session). Before each pass the holder runs ``SELECT 1`` on that connection;
an error means it is not the leader any more. SQLite (one server): an ``fcntl`` lock file
beside the database, as :func:`opsbook.db._database._migration_lock` does, so two servers
started on one file by mistake do not probe twice.

Keys (``pg_try_advisory_lock`` is global to the PostgreSQL cluster's database):

=============  ==========================================================================
0x0B5B0017     :data:`LEADER_KEY`: the background loops of ``opsbook serve`` (monitoring,
               security, backups); one leader runs all of them
0x0B5B00C      schema migrations (:mod:`opsbook.db._database`), not a leader lock
=============  ==========================================================================

Every acquisition is audited (``cluster.leader.acquired``: the loops, the holder, the key).
:func:`while_leader` runs a long-lived loop coroutine only while its process leads.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from opsbook import audit
from opsbook.db import Database, open_database, state_files
from opsbook.engine._base import owner_token
from opsbook.errors import OpsbookError
from opsbook.logs import get_logger

if TYPE_CHECKING:
    from typing import TextIO

LEADER_KEY = 0x0B5B0017
LEADER_ACTOR = "system:cluster"
#: TCP settings of the lock's connection: libpq (client side) and the server's session GUCs.
KEEPALIVES = {"keepalives_idle": 10, "keepalives_interval": 5, "keepalives_count": 3}
TCP_USER_TIMEOUT_MS = 30_000
CONNECT_TIMEOUT = 10


class LeaderLock:
    """``is_leader()`` takes the lock when free and confirms it when held; thread-safe (call
    it from a worker thread in async code: a lost network may block it up to the TCP user
    timeout). ``release()`` gives it up. ``held`` is the last known answer, without I/O (for
    metrics)."""

    def __init__(
        self,
        url: str,
        key: int = LEADER_KEY,
        *,
        poll: float = 5.0,
        loops: Sequence[str] = (),
        holder: str | None = None,
    ) -> None:
        self.url = url
        self.key = key
        self.poll = poll
        self.loops: list[str] = list(loops)
        self.holder = holder or owner_token()
        self.dialect = "postgresql" if url.startswith(("postgres://", "postgresql")) else "sqlite"
        self._mutex = threading.Lock()
        self._conn: Any = None  # psycopg connection holding the advisory lock
        self._file: TextIO | None = None  # SQLite lock file, flocked
        self._held = False
        self._log = get_logger(holder=self.holder, key=f"{key:#x}")

    @property
    def held(self) -> bool:
        return self._held

    @property
    def lock_path(self) -> Path | None:
        """The SQLite lock file (None: PostgreSQL, or an in-memory database)."""
        files = state_files(self.url) if self.dialect == "sqlite" else []
        return files[0].with_suffix(f".leader-{self.key:x}.lock") if files else None

    def add_loop(self, name: str) -> None:
        if name not in self.loops:
            self.loops.append(name)

    def is_leader(self) -> bool:
        with self._mutex:
            if self.dialect == "postgresql":
                self._held = self._pg_pass()
            else:
                self._held = self._file_pass()
            return self._held

    def release(self) -> None:
        with self._mutex:
            was = self._held
            self._held = False
            if was and self._conn is not None and self.dialect == "postgresql":
                # Unlock before closing: the server ends a closed session's backend (and frees
                # its locks) a moment later, and the next replica should not wait for that.
                with contextlib.suppress(Exception):
                    self._conn.execute("SELECT pg_advisory_unlock(%s)", (self.key,))
            self._drop()
            if was:
                self._log.info("cluster.leader.released", fields={"loops": self.loops})

    # -- PostgreSQL ----------------------------------------------------------------------------
    def _pg_pass(self) -> bool:
        import psycopg  # noqa: PLC0415 - only PostgreSQL users pay for the import

        if self._held and self._conn is not None:
            try:
                self._conn.execute("SELECT 1").fetchone()
            except psycopg.Error as exc:
                self._log.warning("cluster.leader.lost", fields={"error": _first_line(exc)})
                self._drop()
                return False
            return True
        try:
            if self._conn is None:
                self._conn = _pg_connect(self.url)
            row = self._conn.execute("SELECT pg_try_advisory_lock(%s)", (self.key,)).fetchone()
        except psycopg.Error as exc:
            self._log.warning("cluster.leader.unreachable", fields={"error": _first_line(exc)})
            self._drop()
            return False
        if not (row and row[0]):
            return False  # another replica leads; keep the connection for the next try
        return self._audit(Database(url=self.url, raw=self._conn, dialect="postgresql"))

    # -- SQLite --------------------------------------------------------------------------------
    def _file_pass(self) -> bool:
        import fcntl  # noqa: PLC0415 - POSIX only, like the migration lock

        path = self.lock_path
        if path is None:  # an in-memory database: one process only
            if not self._held:
                return self._audit_sqlite()
            return True
        if self._file is not None:
            return True  # the flock lives as long as the open file
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        handle = os.fdopen(fd, "a")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            return False
        self._file = handle
        return self._audit_sqlite()

    def _audit_sqlite(self) -> bool:
        try:
            db = open_database(self.url)
        except OpsbookError as exc:
            self._log.warning("cluster.leader.unreachable", fields={"error": str(exc)})
            self._drop()
            return False
        try:
            return self._audit(db)
        finally:
            db.close()

    # -- both ----------------------------------------------------------------------------------
    def _audit(self, db: Database) -> bool:
        """Record the acquisition; a lock whose acquisition cannot be recorded is given up."""
        try:
            audit.record(
                db=db,
                actor=LEADER_ACTOR,
                action="cluster.leader.acquired",
                subject=f"leader:{self.key:#x}",
                payload={"loops": list(self.loops), "holder": self.holder, "key": self.key},
            )
        except OpsbookError as exc:
            self._log.warning("cluster.leader.unrecorded", fields={"error": str(exc)})
            self._drop()
            return False
        self._log.info("cluster.leader.acquired", fields={"loops": self.loops})
        return True

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()  # the session ends: PostgreSQL releases its advisory locks
        handle, self._file = self._file, None
        if handle is not None:
            with contextlib.suppress(OSError):
                handle.close()  # closing the last descriptor releases the flock


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _pg_connect(url: str) -> Any:
    """A dedicated autocommit connection with keepalives on both ends."""
    import psycopg  # noqa: PLC0415
    from psycopg.conninfo import conninfo_to_dict  # noqa: PLC0415

    conninfo = url.replace("postgresql+psycopg://", "postgresql://", 1).replace(
        "postgres://", "postgresql://", 1
    )
    server = " ".join(
        [
            *(f"-c tcp_{name}={value}" for name, value in KEEPALIVES.items()),
            f"-c tcp_user_timeout={TCP_USER_TIMEOUT_MS}",
        ]
    )
    options = str(conninfo_to_dict(conninfo).get("options") or "")
    params: dict[str, Any] = {
        "keepalives": 1,
        **KEEPALIVES,
        "tcp_user_timeout": TCP_USER_TIMEOUT_MS,
        "connect_timeout": CONNECT_TIMEOUT,
        "application_name": "opsbook-leader",
        "options": f"{options} {server}".strip(),
    }
    return psycopg.connect(conninfo, autocommit=True, **params)


async def while_leader(
    lock: LeaderLock,
    loop_name: str,
    body: Callable[[], Awaitable[None]],
    *,
    poll: float | None = None,
) -> None:
    """Run ``body()`` (a long-lived loop such as ``monitoring.background.run_background(ctx)``)
    only while this process holds ``lock``: start it when the lock is taken, confirm the lock
    every ``poll`` seconds (default ``lock.poll``), cancel the body when it is lost and wait to
    take it again. A body that fails is logged and started again after ``poll``; one that
    returns ends this. Cancelling this cancels the body (the lock stays with the caller:
    ``release()`` it at shutdown)."""
    every = lock.poll if poll is None else poll
    lock.add_loop(loop_name)
    log = get_logger(loop=loop_name)
    while True:
        if not await asyncio.to_thread(lock.is_leader):
            await asyncio.sleep(every)
            continue
        log.info("cluster.leader.loop_started")
        task: asyncio.Task[None] = asyncio.ensure_future(body())
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=every)
                if done:
                    break
                if not await asyncio.to_thread(lock.is_leader):
                    log.warning("cluster.leader.loop_stopped", fields={"why": "lock lost"})
                    break
        finally:
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        if task.done() and not task.cancelled():
            exc = task.exception()
            if exc is None:
                return
            log.error("cluster.leader.loop_failed", exc_info=exc)
        await asyncio.sleep(every)
