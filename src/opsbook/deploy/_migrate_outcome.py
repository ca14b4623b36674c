"""The outcomes of one apply (:mod:`opsbook.deploy.migrate`), each audited: refused by the lint,
already applied, or applied and the committed ledger checked again."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from opsbook import audit
from opsbook.deploy._ledgerdb import LedgerTarget, MigrationFailed, Session, broken, row_counts
from opsbook.errors import ConflictError, Location

if TYPE_CHECKING:
    from opsbook.db import Database
    from opsbook.deploy._migration_file import MigrationFile
    from opsbook.deploy._sqltext import Statement
    from opsbook.deploy.migrations import Finding


@dataclass(frozen=True)
class Audit:
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


def refuse_lint(log: Audit, mig: MigrationFile, findings: list[Finding], errors: int) -> None:
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


def already_applied(
    log: Audit,
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


def confirm_applied(
    log: Audit,
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
