"""Apply a migration file to an environment's sandbox ledger (SQLite or PostgreSQL), safely:

1. the lint (:mod:`opsbook.deploy.migrations`) with the running versions' reads: an error that
   is not suppressed refuses the file, nothing is touched;
2. the file is recorded in the ledger's ``schema_migrations`` (version from its name
   ``0001_name.sql``, SHA-256, when, who, ticket): the same file again is a no-op that says so,
   a changed file whose version was applied is refused;
3. a backup of the ledger first (:func:`opsbook.backup.catalogue.take`);
4. the statements in ONE transaction with ``lock_timeout`` and ``statement_timeout`` (SQLite: a
   busy timeout for the lock wait, a progress handler that interrupts a statement running past
   the timeout); the row counts and the ledger invariants are checked inside it before the
   commit — a migration that deletes rows or unbalances the ledger is rolled back — and again
   on the committed ledger after (:meth:`opsbook.sandbox.ledger.Ledger.check`).

A file of ``CONCURRENTLY`` statements (PostgreSQL) cannot run in a transaction: it is applied
statement by statement with the timeouts set for the session, and an index build that fails
leaves no invalid index behind.

Every apply writes one audit record (applied, already applied, refused or failed)."""

from __future__ import annotations

import contextlib
import hashlib
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from opsbook import audit
from opsbook.deploy._ledgerdb import (
    TABLE,
    LedgerTarget,
    LintContext,
    MigrationFailed,
    Session,
    applied_migrations,
    broken,
    conninfo,
    db_error,
    invariants,
    lint_context,
    row_counts,
    running_versions,
    target,
)
from opsbook.deploy.migrations import Dialect, Finding, counts, index_name, lint, target_table
from opsbook.errors import ConflictError, Location, UsageError

__all__ = [
    "FILE_NAME",
    "LedgerTarget",
    "LintContext",
    "MigrationFailed",
    "MigrationFile",
    "apply",
    "conninfo",
    "lint_context",
    "lint_report",
    "read_file",
    "running_versions",
    "status",
    "target",
]

if TYPE_CHECKING:
    from opsbook.config import Settings
    from opsbook.db import Database
    from opsbook.deploy._sqltext import Statement
    from opsbook.workspace import Workspace

FILE_NAME = re.compile(r"^(\d{4,})_([a-z0-9][a-z0-9_]*)\.sql$")


@dataclass(frozen=True)
class MigrationFile:
    path: Path
    shown: str  # as reported: relative to the workspace when inside it
    version: str
    name: str
    text: str
    sha256: str


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def read_file(
    path: Path, *, workspace: Workspace | None = None, named: bool = True
) -> MigrationFile:
    """A migration file: its name must be ``NNNN_name.sql`` (the version orders them), unless
    ``named`` is False (a file only linted)."""
    shown = str(path)
    if workspace is not None:
        with contextlib.suppress(ValueError):
            shown = str(path.resolve().relative_to(workspace.root.resolve()))
    if not path.is_file():
        raise UsageError(
            f"no migration file {shown}",
            field="file",
            hint="a path relative to the workspace, e.g. migrations/0001_account_display_name.sql",
        )
    m = FILE_NAME.match(path.name)
    if m is None and named:
        raise UsageError(
            f"{path.name}: a migration file is named NNNN_name.sql (a version of 4+ digits, a"
            " lower-case name)",
            location=Location(shown),
            hint="e.g. migrations/0002_transfer_channel.sql",
        )
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{shown} is not UTF-8 text: {exc}", location=Location(shown)) from None
    return MigrationFile(
        path=path,
        shown=shown,
        version=m.group(1) if m else "",
        name=m.group(2) if m else path.stem,
        text=text,
        sha256=hashlib.sha256(data).hexdigest(),
    )


def lint_report(
    mig: MigrationFile,
    *,
    dialect: Dialect,
    reads: dict[str, set[str]] | None,
    versions: list[str] | None = None,
) -> dict[str, Any]:
    """What ``deploy.lint_migration`` and ``migrations lint --json`` answer."""
    findings = lint(mig.text, path=mig.shown, dialect=dialect, reads=reads)
    errors, warnings = counts(findings)
    return {
        "file": mig.shown,
        "dialect": dialect,
        "running_versions": versions,
        "findings": [f.to_dict() for f in findings],
        "errors": errors,
        "warnings": warnings,
        "suppressed": sum(1 for f in findings if f.suppressed),
    }


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


def _failure(
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


# -- apply -------------------------------------------------------------------------------------


def _check_timeouts(lock_timeout: float, statement_timeout: float) -> None:
    if not 0 < lock_timeout <= 600:
        raise UsageError(
            f"lock_timeout must be more than 0 and at most 600 seconds, not {lock_timeout:g}",
            field="lock_timeout",
            hint="a few seconds: a migration that cannot get its lock quickly should give up",
        )
    if not 0 < statement_timeout <= 86_400:
        raise UsageError(
            f"statement_timeout must be more than 0 and at most 86400 seconds, not"
            f" {statement_timeout:g}",
            field="statement_timeout",
        )


@dataclass(frozen=True)
class _Audit:
    """One apply's audit: who, where, from which execution (a runbook's) if any."""

    db: Database
    actor: str
    environment: str
    execution_id: str | None

    def __call__(self, action: str, mig: MigrationFile, **kw: Any) -> None:
        audit.record(
            db=self.db,
            actor=self.actor,
            action=action,
            subject=f"migration:{self.environment}:{mig.version}",
            payload={"file": mig.shown, "name": mig.name, "sha256": mig.sha256, **kw},
            execution_id=self.execution_id,
        )


def apply(
    *,
    db: Database,
    workspace: Workspace,
    settings: Settings,
    environment: str,
    path: Path,
    actor: str,
    ticket: str | None,
    lock_timeout: float = 5.0,
    statement_timeout: float = 60.0,
    backup: bool = True,
    execution_id: str | None = None,
) -> dict[str, Any]:
    """Apply one migration file to the environment's ledger (see the module docstring).

    Raises :class:`MigrationFailed` (exit 1: lint errors, a lock or statement timeout, a failed
    statement, broken invariants), :class:`ConflictError` (exit 2: the version was applied from
    another file) and :class:`UsageError` (exit 2: a bad file name or timeout)."""
    from opsbook.deploy._sqltext import SqlTextError, split  # noqa: PLC0415

    _check_timeouts(lock_timeout, statement_timeout)
    log = _Audit(db, actor, environment, execution_id)
    mig = read_file(path, workspace=workspace)
    tgt = target(workspace=workspace, environment=environment)
    lc = lint_context(workspace=workspace, environment=environment)
    versions = lc.versions
    findings = lint(mig.text, path=mig.shown, dialect=tgt.dialect, reads=lc.reads)
    errors, warnings = counts(findings)
    base: dict[str, Any] = {
        "environment": environment,
        "file": mig.shown,
        "version": mig.version,
        "name": mig.name,
        "sha256": mig.sha256,
        "dialect": tgt.dialect,
        "ticket": ticket,
        "running_versions": versions,
        "lock_timeout_s": lock_timeout,
        "statement_timeout_s": statement_timeout,
        "findings": [f.to_dict() for f in findings],
        "errors": errors,
        "warnings": warnings,
    }
    try:
        statements = split(mig.text)
    except SqlTextError:
        statements = []  # a syntax-error finding: refused below unless already applied
    t0 = time.perf_counter()
    session = Session(tgt, lock_timeout=lock_timeout)
    try:
        done = applied_migrations(session, create=True).get(mig.version)
    except Exception as exc:
        if not db_error(exc):
            raise
        failed = _failure(
            exc,
            mig=mig,
            stmt=None,
            first=statements[0] if statements else None,
            lock_timeout=lock_timeout,
            statement_timeout=statement_timeout,
            holders="",
            applied_note=f"nothing was applied (reading the {TABLE} table)",
        )
        log("migration.failed", mig, ticket=ticket, backup=None, error=failed.render())
        raise failed from None
    finally:
        session.close()
    if done is not None:  # before the lint: an applied file stays a no-op whatever runs now
        return _already(log, mig, tgt, done, base)
    if errors:
        _refuse_lint(log, mig, findings, errors)
    if not statements:
        raise UsageError(f"{mig.shown} holds no statement", location=Location(mig.shown))
    backup_id: str | None = None
    if backup:
        from opsbook.backup import catalogue  # noqa: PLC0415

        taken = catalogue.take(
            db, workspace=workspace, environment=environment, settings=settings, actor=actor
        )
        backup_id = str(taken["id"])
    base["backup"] = backup_id
    transactional = not any(s.concurrent for s in statements) or tgt.dialect == "sqlite"
    run = _run_in_transaction if transactional else _run_one_by_one
    try:
        before, inside = run(
            tgt,
            mig,
            statements,
            lock_timeout=lock_timeout,
            statement_timeout=statement_timeout,
            record=(_now(), actor, ticket, backup_id),
            t0=t0,
        )
    except MigrationFailed as exc:
        log(
            "migration.failed",
            mig,
            ticket=ticket,
            backup=backup_id,
            error=exc.render(),
        )
        raise
    return _after(log, mig, tgt, base, before, inside, statements, transactional, t0)


def _refuse_lint(log: _Audit, mig: MigrationFile, findings: list[Finding], errors: int) -> None:
    active = [f for f in findings if not f.suppressed and f.severity == "error"]
    log(
        "migration.refused",
        mig,
        reason="lint",
        findings=[f"{f.path}:{f.line}:{f.column}: {f.rule}" for f in active],
    )
    raise MigrationFailed(
        f"{mig.shown}: {errors} lint error{'s' if errors != 1 else ''}; nothing was applied\n"
        + "\n".join(f.render() for f in active),
        hint="change the migration as each fix says (docs/deployment-migrations.md); a finding"
        " reviewed and accepted is suppressed with `-- lint: ignore RULE` above its statement",
    )


def _already(
    log: _Audit,
    mig: MigrationFile,
    tgt: LedgerTarget,
    done: dict[str, Any],
    base: dict[str, Any],
) -> dict[str, Any]:
    if done["sha256"] != mig.sha256:
        log("migration.refused", mig, reason="changed", applied=done)
        raise ConflictError(
            f"migration {mig.version} was applied on {str(done['applied_at'])[:19]}Z by"
            f" {done['applied_by']} from a different file (sha256 {str(done['sha256'])[:12]}…,"
            f" this file {mig.sha256[:12]}…): an applied migration is never edited",
            location=Location(mig.shown),
            hint=f"put back the applied version of {mig.shown} and write the change as a new"
            " migration with the next number",
        )
    from opsbook.sandbox.ledger import Ledger  # noqa: PLC0415

    ledger = Ledger(tgt.url)
    try:
        inv = ledger.check().as_dict()
    finally:
        ledger.close()
    log("migration.already_applied", mig, applied=done)
    return {
        **base,
        "status": "already-applied",
        "applied_at": done["applied_at"],
        "applied_by": done["applied_by"],
        "backup": None,
        "invariants": inv,
        "invariants_ok": bool(inv["ok"]),
        "message": f"{mig.shown} was already applied on {str(done['applied_at'])[:19]}Z by"
        f" {done['applied_by']} (ticket {done['ticket'] or '-'}): nothing to do",
    }


def _run_in_transaction(
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
            raise _failure(
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


def _run_one_by_one(
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
                raise _failure(
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


def _after(
    log: _Audit,
    mig: MigrationFile,
    tgt: LedgerTarget,
    base: dict[str, Any],
    before: dict[str, int],
    inside: dict[str, Any],
    statements: list[Statement],
    transactional: bool,
    t0: float,
) -> dict[str, Any]:
    """The committed ledger checked again (the services write meanwhile: rows only added)."""
    from opsbook.sandbox.ledger import Ledger  # noqa: PLC0415

    s = Session(tgt, lock_timeout=5.0)
    try:
        after = row_counts(s)
    finally:
        s.close()
    ledger = Ledger(tgt.url)
    try:
        report = ledger.check().as_dict()
    finally:
        ledger.close()
    problems = broken(before, after, report)
    took = round(time.perf_counter() - t0, 3)
    out = {
        **base,
        "status": "applied",
        "statements": len(statements),
        "transactional": transactional,
        "duration_s": took,
        "counts_before": before,
        "counts_at_commit": inside["counts"],
        "counts_after": after,
        "invariants": report,
        "invariants_ok": bool(report["ok"]) and not problems,
        "problems": problems,
        "message": f"applied {mig.shown} ({len(statements)} statement"
        f"{'s' if len(statements) != 1 else ''}) to the ledger of {base['environment']} in"
        f" {took:.2f} s",
    }
    log(
        "migration.applied",
        mig,
        ticket=base["ticket"],
        backup=base.get("backup"),
        statements=len(statements),
        duration_s=took,
        counts_before=before,
        counts_after=after,
        invariants_ok=out["invariants_ok"],
        problems=problems,
        suppressed=[f["rule"] for f in base["findings"] if f["suppressed"]],
    )
    if problems or not report["ok"]:
        raise MigrationFailed(
            f"{mig.shown} was applied, but the ledger after it is not right: "
            + "; ".join(problems or ["the ledger invariants do not hold"]),
            hint=f"stop and escalate: compare with the backup {base.get('backup') or '(none)'}"
            " (opsbook backups show ID) before anything else writes",
        )
    return out


# -- status ------------------------------------------------------------------------------------


def status(*, workspace: Workspace, settings: Settings, environment: str) -> list[dict[str, Any]]:
    """The applied migrations of the environment's ledger and the files of the workspace's
    ``migrations/`` directory not applied yet (``pending``), or changed since (``changed``)."""
    del settings  # the ledger is found from the environment file
    tgt = target(workspace=workspace, environment=environment)
    applied: dict[str, dict[str, Any]] = {}
    if tgt.dialect == "postgresql" or tgt.path.is_file():
        s = Session(tgt, lock_timeout=5.0)
        try:
            applied = applied_migrations(s, create=False)
        finally:
            s.close()
    files: dict[str, MigrationFile] = {}
    folder = workspace.root / "migrations"
    for p in sorted(folder.glob("*.sql")) if folder.is_dir() else []:
        if FILE_NAME.match(p.name):
            found = read_file(p, workspace=workspace)
            files.setdefault(found.version, found)
    out: list[dict[str, Any]] = []
    for version in sorted(set(applied) | set(files)):
        row, mig = applied.get(version), files.get(version)
        if row is None:
            assert mig is not None
            out.append(
                {
                    "version": version,
                    "name": mig.name,
                    "file": mig.shown,
                    "state": "pending",
                    "sha256": mig.sha256,
                }
            )
            continue
        state = "applied"
        if mig is None:
            state = "applied (no file)"
        elif mig.sha256 != row["sha256"]:
            state = "changed"
        out.append(
            {
                "version": version,
                "name": row["name"],
                "file": mig.shown if mig else None,
                "state": state,
                "sha256": row["sha256"],
                "applied_at": row["applied_at"],
                "applied_by": row["applied_by"],
                "ticket": row["ticket"],
                "duration_s": row["duration_s"],
                "backup": row["backup_id"],
            }
        )
    return out
