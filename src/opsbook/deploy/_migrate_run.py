"""Running a migration's statements on the ledger (:mod:`opsbook.deploy.migrate`): in one
transaction with the checks before its commit, or (a file of CONCURRENTLY statements on
PostgreSQL) one by one; and a database error turned into the :class:`MigrationFailed` an
operator can act on (a lock wait, a statement timeout, a failed statement)."""

from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING, Any

from opsbook.deploy._ledgerdb import (
    LedgerTarget,
    MigrationFailed,
    Session,
    broken,
    db_error,
    invariants,
    row_counts,
)
from opsbook.deploy.migrations import index_name, target_table
from opsbook.errors import Location

if TYPE_CHECKING:
    from opsbook.deploy._migration_file import MigrationFile
    from opsbook.deploy._sqltext import Statement

# -- failures ----------------------------------------------------------------------------------


def _is_lock_error(exc: BaseException) -> bool:
    sqlstate = getattr(exc, "sqlstate", None)
    if sqlstate == "55P03":
        return True
    text = str(exc).lower()
    return sqlstate is None and ("database is locked" in text or "table is locked" in text)


def _is_timeout(exc: BaseException) -> bool:
    return getattr(exc, "sqlstate", None) == "57014" or str(exc).lower() == "interrupted"


def _holders(s: Session, table: str | None) -> str:
    """Who holds a lock on ``table`` (PostgreSQL), for the message."""
    if s.dialect != "postgresql" or not table:
        return ""
    try:
        rows = s.q(
            "SELECT l.pid, l.mode, a.state, a.application_name FROM pg_locks l JOIN"
            " pg_stat_activity a ON a.pid = l.pid WHERE l.granted AND l.pid <> pg_backend_pid()"
            " AND l.relation = (SELECT oid FROM pg_class WHERE relname = ? LIMIT 1)",
            table,
        )
    except Exception:  # best effort: the message is complete without it
        return ""
    return "; ".join(
        f"pid {r['pid']} ({r['state'] or 'unknown'}"
        f"{', ' + r['application_name'] if r['application_name'] else ''}) holds {r['mode']}"
        for r in rows[:3]
    )


def failure(
    exc: BaseException,
    *,
    mig: MigrationFile,
    stmt: Statement | None,
    first: Statement | None,
    lock_timeout: float,
    statement_timeout: float,
    holders: str,
    applied_note: str,
) -> MigrationFailed:
    where = Location(mig.shown, stmt.line, stmt.col) if stmt is not None else Location(mig.shown)
    if _is_lock_error(exc):
        subject = stmt or first
        table = target_table(subject) if subject is not None else None
        what = table or "the ledger"
        also = " (SQLite locks the whole ledger file)" if "locked" in str(exc) else ""
        return MigrationFailed(
            f"another session holds a lock on {what}{also}; waited lock_timeout"
            f" {lock_timeout:g}s; {applied_note}; try again in a quieter moment"
            + (f" [{holders}]" if holders else ""),
            location=where,
            hint="find the long transaction (sandbox: opsbook sandbox status; PostgreSQL:"
            " pg_stat_activity), wait for it to end, then apply again",
            retryable=True,
        )
    if _is_timeout(exc):
        return MigrationFailed(
            f"the statement ran longer than statement_timeout {statement_timeout:g}s and was"
            f" cancelled; {applied_note}",
            location=where,
            hint="raise --statement-timeout if the window allows, or split the work (a backfill"
            " in batches, an index built CONCURRENTLY)",
        )
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return MigrationFailed(
        f"the statement failed: {message}; {applied_note}",
        location=where,
        hint="fix the statement and apply again (the file was not recorded)",
    )


# -- running -----------------------------------------------------------------------------------


def run_in_transaction(
    tgt: LedgerTarget,
    mig: MigrationFile,
    statements: list[Statement],
    *,
    lock_timeout: float,
    statement_timeout: float,
    record: tuple[str, str, str | None, str | None],
    t0: float,
) -> tuple[dict[str, int], dict[str, Any]]:
    """Everything in one transaction; the checks before its commit. (counts before, inside)"""
    s = Session(tgt, lock_timeout=lock_timeout)
    current: Statement | None = None
    began = False
    try:
        try:
            if tgt.dialect == "postgresql":
                s.q("BEGIN")
                began = True
                s.q(f"SET LOCAL lock_timeout = '{int(lock_timeout * 1000)}ms'")
                s.q(f"SET LOCAL statement_timeout = '{int(statement_timeout * 1000)}ms'")
            else:
                s.q("BEGIN IMMEDIATE")  # the write lock now, waiting at most lock_timeout
                began = True
            before = row_counts(s)
            for stmt in statements:
                current = stmt
                _with_deadline(s, statement_timeout, stmt.text)
            current = None
            after = row_counts(s)
            inv = invariants(s)
            problems = broken(before, after, inv)
            if problems:
                raise MigrationFailed(
                    f"{mig.shown} breaks the ledger: " + "; ".join(problems) + "; nothing was"
                    " applied (rolled back before the commit)",
                    location=Location(mig.shown),
                    hint="a migration changes the schema or adds data; it never deletes rows or"
                    " moves money: fix the file",
                )
            _insert_record(s, mig, record, t0)
            s.q("COMMIT")
        except Exception as exc:
            if began:
                with contextlib.suppress(Exception):
                    s.q("ROLLBACK")
            if not db_error(exc):
                raise
            raise failure(
                exc,
                mig=mig,
                stmt=current,
                first=statements[0],
                lock_timeout=lock_timeout,
                statement_timeout=statement_timeout,
                holders=_holders(s, target_table(current or statements[0])),
                applied_note="nothing was applied (rolled back)",
            ) from None
        return before, {"counts": after, "invariants": inv}
    finally:
        s.close()


def run_one_by_one(
    tgt: LedgerTarget,
    mig: MigrationFile,
    statements: list[Statement],
    *,
    lock_timeout: float,
    statement_timeout: float,
    record: tuple[str, str, str | None, str | None],
    t0: float,
) -> tuple[dict[str, int], dict[str, Any]]:
    """A file of CONCURRENTLY statements (PostgreSQL): each on its own, the timeouts set for
    the session; a failed index build's invalid index is dropped."""
    s = Session(tgt, lock_timeout=lock_timeout)
    try:
        s.q(f"SET lock_timeout = '{int(lock_timeout * 1000)}ms'")
        s.q(f"SET statement_timeout = '{int(statement_timeout * 1000)}ms'")
        before = row_counts(s)
        for n, stmt in enumerate(statements):
            try:
                s.run(stmt.text)
            except Exception as exc:
                if not db_error(exc):
                    raise
                dropped = _drop_invalid_index(s, stmt)
                note = (
                    f"the {n} statement{'s' if n != 1 else ''} before it stay applied"
                    if n
                    else "nothing was applied"
                ) + (f"; the invalid index {dropped} it left was dropped" if dropped else "")
                raise failure(
                    exc,
                    mig=mig,
                    stmt=stmt,
                    first=statements[0],
                    lock_timeout=lock_timeout,
                    statement_timeout=statement_timeout,
                    holders=_holders(s, target_table(stmt)),
                    applied_note=note + "; the file is not recorded, run it again when fixed",
                ) from None
        _insert_record(s, mig, record, t0)
        return before, {"counts": row_counts(s), "invariants": invariants(s)}
    finally:
        s.close()


def _insert_record(
    s: Session, mig: MigrationFile, record: tuple[str, str, str | None, str | None], t0: float
) -> None:
    applied_at, actor, ticket, backup_id = record
    s.q(
        "INSERT INTO schema_migrations (version, name, sha256, applied_at, applied_by, ticket,"
        " duration_s, backup_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        mig.version,
        mig.name,
        mig.sha256,
        applied_at,
        actor,
        ticket,
        round(time.perf_counter() - t0, 3),
        backup_id,
    )


def _drop_invalid_index(s: Session, stmt: Statement) -> str | None:
    name = index_name(stmt) if stmt.words()[0] == "CREATE" else None
    if not name:
        return None
    with contextlib.suppress(Exception):
        rows = s.q(
            "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
            " WHERE NOT i.indisvalid AND c.relname = ?",
            name,
        )
        if rows:
            s.q("SET statement_timeout = 0")
            s.run(f'DROP INDEX CONCURRENTLY IF EXISTS "{name}"')
            return name
    return None


def _with_deadline(s: Session, seconds: float, text: str) -> None:
    """Run one statement. SQLite has no statement_timeout: a progress handler interrupts the
    statement once it has run ``seconds`` (PostgreSQL's SET LOCAL statement_timeout does it)."""
    if s.dialect != "sqlite":
        s.run(text)
        return
    deadline = time.monotonic() + seconds
    s.raw.set_progress_handler(lambda: 1 if time.monotonic() > deadline else 0, 1000)
    try:
        s.run(text)
    finally:
        s.raw.set_progress_handler(None, 0)
