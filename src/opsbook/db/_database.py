from __future__ import annotations

import contextlib
import os
import re
import sqlite3
import time
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from opsbook.errors import DatabaseError

#: The Alembic head this code expects; tests check it matches the migrations directory.
SCHEMA_HEAD = "0016"

_QMARK = re.compile(r"\?")
#: Seconds a change marker may be vouched for by an unchanged WAL-index header alone before
#: the database is asked again (a bound in case the header file is ever replaced).
FULL_CHECK_EVERY = 1.0


class Database:
    """One connection, used by one thread. ``transaction()`` is the unit of work: the caller
    owns it, so a state change, its projection and its audit record commit together."""

    def __init__(self, *, url: str, raw: Any, dialect: str) -> None:
        self.url = url
        self.raw = raw
        self.dialect = dialect
        self._depth = 0
        #: Called after each committed transaction (the WAL checkpointer's backstop).
        self.after_commit: Callable[[], None] | None = None
        self._shm_fd: int | None = None
        self._shm_tried = False
        self._marker_seen: tuple[tuple[int, int], bytes, float] | None = None

    # -- statements ------------------------------------------------------------------------
    def _sql(self, sql: str) -> str:
        if self.dialect == "postgresql":
            return _QMARK.sub("%s", sql)
        return sql

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run a statement; returns the row count."""
        try:
            cur = self.raw.execute(self._sql(sql), tuple(params))
        except Exception as exc:
            raise _wrap(exc, sql) from exc
        return int(cur.rowcount or 0)

    def insert(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run an INSERT and return the new row's integer id (``RETURNING id``)."""
        try:
            cur = self.raw.execute(self._sql(sql + " RETURNING id"), tuple(params))
            row = cur.fetchone()
        except Exception as exc:
            raise _wrap(exc, sql) from exc
        return int(row[0])

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        try:
            cur = self.raw.execute(self._sql(sql), tuple(params))
            cols = [d[0] for d in cur.description] if cur.description else []
            return [dict(zip(cols, row, strict=True)) for row in cur.fetchall()]
        except Exception as exc:
            raise _wrap(exc, sql) from exc

    def one(self, sql: str, params: Sequence[Any] = ()) -> dict[str, Any] | None:
        rows = self.query(sql, params)
        return rows[0] if rows else None

    # -- transactions ----------------------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[Database]:
        """A write transaction (SQLite: ``BEGIN IMMEDIATE`` so writers serialise up front).
        Nested calls join the outer transaction."""
        if self._depth:
            self._depth += 1
            try:
                yield self
            finally:
                self._depth -= 1
            return
        self._begin()
        self._depth = 1
        try:
            yield self
        except BaseException:
            self._depth = 0
            self._rollback()
            raise
        self._depth = 0
        self._commit()

    @property
    def in_transaction(self) -> bool:
        return self._depth > 0

    def change_marker(self) -> Hashable | None:
        """A value that differs once anything has been written to the database since it was
        last taken, or None when the caller is inside a transaction (its writes are not
        committed yet).

        SQLite: ``PRAGMA data_version`` moves when another connection commits, and the
        connection's ``total_changes`` when this one writes (a rolled-back write moves it
        too, which only costs a needless re-read).

        PostgreSQL: ``pg_current_snapshot()`` (xmin:xmax:in-progress xids). Two equal snapshots
        see the same committed transactions, from this connection or any other (replicas,
        workers); a commit moves xmax or leaves the in-progress list. Writes to other databases
        of the cluster move it too, which only costs a re-read (ADR 0017 §7).
        """
        if self._depth:
            return None
        if self.dialect == "postgresql":
            try:
                row = self.raw.execute("SELECT pg_current_snapshot()::text").fetchone()
            except Exception:  # no marker: the caller computes, as before
                return None
            return ("pg", str(row[0])) if row else None
        if self.dialect != "sqlite":
            return None
        header = self.wal_index_header()
        changes = int(self.raw.total_changes)
        seen = self._marker_seen
        if seen is not None and header is not None:
            marker, seen_header, until = seen
            if header == seen_header and marker[1] == changes and time.monotonic() < until:
                return marker  # nothing committed anywhere since it was taken
        try:
            version = self.raw.execute("PRAGMA data_version").fetchone()[0]
        except sqlite3.Error:
            return None
        marker = (int(version), changes)
        if header is not None:  # taken before the query: a commit in between is seen next time
            self._marker_seen = (marker, header, time.monotonic() + FULL_CHECK_EVERY)
        return marker

    def wal_index_header(self) -> bytes | None:
        """SQLite's WAL-index header (the first 48 bytes of the ``-shm`` file: a counter of
        transactions, the last committed frame, salts and checksums; "The WAL-Index Format" in
        SQLite's file format document). Every commit by any connection changes it, so while it
        reads the same nothing has been committed anywhere. A read, not a query (~1 µs against
        ~15 µs for ``PRAGMA data_version``), for the caches that must see every change at once.
        None when it cannot be read (PostgreSQL, no WAL, an in-memory database)."""
        fd = self._shm_fd
        if fd is None:
            if self._shm_tried or self.dialect != "sqlite":
                return None
            self._shm_tried = True
            try:
                fd = self._shm_fd = os.open(f"{_sqlite_path(self.url)}-shm", os.O_RDONLY)
            except FileNotFoundError:  # no reader has opened the WAL yet: look again later
                self._shm_tried = False
                return None
            except (OSError, ValueError):
                return None
        try:
            header = os.pread(fd, 48, 0)
        except OSError:
            return None
        return header if len(header) == 48 else None

    def _begin(self) -> None:
        try:
            if self.dialect == "sqlite":
                self.raw.execute("BEGIN IMMEDIATE")
            else:
                self.raw.execute("BEGIN")
        except Exception as exc:
            raise _wrap(exc, "BEGIN") from exc

    def _commit(self) -> None:
        try:
            self.raw.execute("COMMIT")
        except Exception as exc:
            raise _wrap(exc, "COMMIT") from exc
        if self.after_commit is not None:
            self.after_commit()

    def _rollback(self) -> None:
        with contextlib.suppress(Exception):  # nothing to roll back is fine
            self.raw.execute("ROLLBACK")

    def close(self) -> None:
        if self._shm_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._shm_fd)
            self._shm_fd = None
        self.raw.close()


def _wrap(exc: Exception, sql: str) -> DatabaseError:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    retryable = "locked" in text or "could not serialize" in text
    return DatabaseError(
        f"database error: {text}",
        hint="check OPSBOOK_DATABASE_URL and that the database is reachable and migrated",
        retryable=retryable,
    )


def _sqlite_path(url: str) -> Path:
    if url.startswith("sqlite:///"):
        return Path(url[len("sqlite:///") :])
    if url.startswith("sqlite://"):
        return Path(url[len("sqlite://") :])
    return Path(url)


#: Modes of a new state database and of the directory made for it: the database holds password
#: and token hashes and the audit journal, so only its owner reads it (like the signing keys).
#: SQLite gives the -wal and -shm files the database file's mode.
PRIVATE_FILE, PRIVATE_DIR = 0o600, 0o700


def _create_private(path: Path) -> None:
    """Make the database's directory (0700) and an empty database file (0600) when missing.
    Existing files keep their mode (`opsbook doctor` flags loose ones with the fix)."""
    if str(path) in (":memory:", "") or str(path).startswith("file:"):
        return
    if not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
    except FileExistsError:
        return
    os.close(fd)


def state_files(url: str) -> list[Path]:
    """The files of a SQLite database URL (database, -wal, -shm); none for PostgreSQL."""
    if not url.startswith("sqlite:") and "://" in url:
        return []
    path = _sqlite_path(url)
    if str(path) in (":memory:", "") or str(path).startswith("file:"):
        return []
    return [path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")]


def _connect_sqlite(url: str) -> Database:
    path = _sqlite_path(url)
    try:
        _create_private(path)
        raw = sqlite3.connect(
            str(path), isolation_level=None, timeout=30.0, check_same_thread=False
        )
        raw.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode: every commit survives a process crash (kill -9); only a power
        # loss can lose the last transactions. See docs/adr/0002-db-api-journal.md.
        raw.execute("PRAGMA synchronous=NORMAL")
        raw.execute("PRAGMA foreign_keys=ON")
        raw.execute("PRAGMA busy_timeout=30000")
    except (sqlite3.Error, OSError) as exc:
        raise DatabaseError(
            f"cannot open the database at {path}: {exc}",
            hint="check that the directory exists and is writable, or set OPSBOOK_DATABASE_URL",
        ) from exc
    return Database(url=url, raw=raw, dialect="sqlite")


def _connect_postgres(url: str) -> Database:
    try:
        import psycopg  # noqa: PLC0415 - only PostgreSQL users pay for the import
    except ImportError as exc:  # pragma: no cover - psycopg is a dependency
        raise DatabaseError(
            "psycopg is not installed", hint="pip install 'psycopg[binary]'"
        ) from exc
    conninfo = url.replace("postgresql+psycopg://", "postgresql://", 1)
    try:
        raw = psycopg.connect(conninfo, autocommit=True)
    except Exception as exc:
        raise DatabaseError(
            f"cannot connect to PostgreSQL: {str(exc).strip().splitlines()[0]}",
            hint="check OPSBOOK_DATABASE_URL (postgresql://user@host:port/dbname) and the server",
        ) from exc
    return Database(url=url, raw=raw, dialect="postgresql")


def connect(url: str) -> Database:
    if url.startswith(("postgresql://", "postgresql+psycopg://", "postgres://")):
        return _connect_postgres(url.replace("postgres://", "postgresql://", 1))
    if url.startswith("sqlite:") or "://" not in url:
        return _connect_sqlite(url)
    raise DatabaseError(
        f"unsupported database URL {url.split('://', maxsplit=1)[0]}://…",
        hint="use sqlite:///PATH or postgresql://USER@HOST:PORT/DB",
    )


def current_revision(db: Database) -> str | None:
    try:
        row = db.one("SELECT version_num FROM alembic_version")
    except DatabaseError:
        if db.dialect == "postgresql":
            db.raw.rollback() if not db.raw.autocommit else None
        return None
    return str(row["version_num"]) if row else None


def migrate(url: str) -> None:
    """Apply Alembic migrations up to head (imports Alembic and SQLAlchemy: only when needed)."""
    from alembic import command  # noqa: PLC0415
    from alembic.config import Config  # noqa: PLC0415

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    sa_url = url
    if url.startswith(("postgresql://", "postgres://")):
        sa_url = "postgresql+psycopg://" + url.split("://", 1)[1]
    cfg.set_main_option("sqlalchemy.url", sa_url.replace("%", "%%"))
    try:
        command.upgrade(cfg, "head")
    except Exception as exc:
        raise DatabaseError(
            f"cannot migrate the database schema: {str(exc).strip().splitlines()[0]}",
            hint="check that the database user may create tables",
        ) from exc


def open_database(url: str) -> Database:
    """Open the database and bring its schema to head (Alembic), checked cheaply first.
    Processes that open a new database at the same time (a CLI beside `opsbook serve`)
    migrate one after the other: the first does it, the others find it done."""
    db = connect(url)
    if current_revision(db) != SCHEMA_HEAD:
        with _migration_lock(db):
            if current_revision(db) != SCHEMA_HEAD:
                migrate(url)
    return db


_PG_MIGRATION_LOCK = 0x0B5B00C  # pg_advisory_lock key: "opsbook schema migration"


@contextmanager
def _migration_lock(db: Database) -> Iterator[None]:
    """A cross-process lock for migrating: a lock file beside a SQLite database, a session
    advisory lock on PostgreSQL."""
    if db.dialect == "sqlite":
        import fcntl  # noqa: PLC0415

        path = _sqlite_path(db.url)
        if path.name == ":memory:":  # one process only
            yield
            return
        lock_path = path.with_suffix(".migrate.lock")
        fd = os.open(lock_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, PRIVATE_FILE)
        with os.fdopen(fd, "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)
        return
    db.raw.execute("SELECT pg_advisory_lock(%s)", (_PG_MIGRATION_LOCK,))
    try:
        yield
    finally:
        db.raw.execute("SELECT pg_advisory_unlock(%s)", (_PG_MIGRATION_LOCK,))


def sqlite_url_for(path: Path) -> str:
    return f"sqlite:///{path}"


def as_mapping(row: Mapping[str, Any] | None) -> dict[str, Any]:
    return dict(row) if row else {}
