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

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from opsbook.deploy._ledgerdb import (
    TABLE,
    LedgerTarget,
    LintContext,
    MigrationFailed,
    Session,
    applied_migrations,
    conninfo,
    db_error,
    lint_context,
    running_versions,
    target,
)
from opsbook.deploy._migrate_outcome import Audit, already_applied, confirm_applied, refuse_lint
from opsbook.deploy._migrate_run import failure, run_in_transaction, run_one_by_one
from opsbook.deploy._migration_file import FILE_NAME, MigrationFile, read_file
from opsbook.deploy.migrations import Dialect, counts, lint
from opsbook.errors import Location, UsageError

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
    from opsbook.workspace import Workspace


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


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
    log = Audit(db, actor, environment, execution_id)
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
        failed = failure(
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
        return already_applied(log, mig, tgt, done, base)
    if errors:
        refuse_lint(log, mig, findings, errors)
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
    run = run_in_transaction if transactional else run_one_by_one
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
    return confirm_applied(log, mig, tgt, base, before, inside, statements, transactional, t0)


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
