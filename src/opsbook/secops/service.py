"""One security check run end to end: run the catalogue against an environment, record the
scan and each check's result, move the findings, and alert on findings newly overdue. The CLI
(`opsbook security check`), the runbook action (``security.check``) and the daily run in
`opsbook serve` all come through here."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from opsbook.secops import findings
from opsbook.secops.checks import CheckRun
from opsbook.secops.checks._run import run_checks_async
from opsbook.secops.settings import SecuritySettings, load_security_settings

if TYPE_CHECKING:
    from opsbook.config import Settings
    from opsbook.db import Database
    from opsbook.workspace import Workspace

RUNBOOK = "security-operations#daily-security-checks"


async def check_and_record(
    *,
    workspace: Workspace,
    environment: str,
    db: Database,
    settings: Settings,
    actor: str,
    only: Sequence[str] = (),
    source: str = "cli",
    record: bool = True,
    now: datetime | None = None,
) -> tuple[CheckRun, dict[str, Any] | None]:
    """(the run, the scan summary or None when ``record`` is off)."""
    run = await run_checks_async(
        workspace=workspace, environment=environment, db=db, settings=settings, only=only, now=now
    )
    if not record:
        return run, None
    cfg = load_security_settings(workspace)
    results = [
        {
            "check_id": r.spec.id,
            "status": r.outcome.status,
            "severity": r.spec.severity,
            "failures": len(r.outcome.failures),
            "detail": {
                "evidence": r.outcome.evidence,
                "error": r.outcome.error,
                "failures": [f.text for f in r.outcome.failures][:20],
            },
        }
        for r in run.results
    ]
    # A check that errored looked at nothing: its open findings are not "fixed" by it.
    ran = [r.spec.id for r in run.results if r.outcome.status in ("pass", "fail")]
    summary = findings.ingest(
        db,
        kind="checks",
        environment=run.environment,
        source="check",
        inputs=run.findings(),
        complete=True,
        actor=actor,
        settings=cfg,
        scope_rules=ran,
        results=results,
        started_at=run.started_at,
        now=now,
    )
    summary["source"] = source
    alert_overdue(db, settings=cfg, actor=actor, now=now)
    return run, summary


def alert_overdue(
    db: Database,
    *,
    settings: SecuritySettings,
    actor: str,
    now: datetime | None = None,
) -> list[str]:
    """Raise one alert per finding newly past its due date (and reopen expired acceptances
    first, so a lapsed acceptance is caught the same day). Returns the findings alerted."""
    from opsbook.monitoring.alerts import IncomingAlert, ingest, iso  # noqa: PLC0415

    findings.expire_acceptances(db, now=now)
    due = findings.newly_overdue(db, now=now)
    if not due:
        return []
    when = iso(now or datetime.now(UTC))
    alerts = [
        IncomingAlert(
            fingerprint=f"security-overdue-{f['fingerprint'][:16]}",
            status="firing",
            labels={
                "alertname": "SecurityFindingOverdue",
                "severity": "critical" if f["severity"] in ("critical", "high") else "warning",
                "environment": f["environment"],
                "finding": f["ref"],
                "rule": f["rule_id"],
            },
            annotations={
                "summary": f"{f['ref']} ({f['severity']}: {f['title']}) is past its due date"
                f" {f['due_at'][:10]}; owner {f['owner'] or 'nobody'}",
                "runbook": "security-operations#vulnerability-management",
            },
            starts_at=when,
            ends_at=None,
        )
        for f in due
    ]
    ingest(
        db,
        alerts=alerts,
        source="security",
        actor=actor,
        runbook_for=lambda a: "security-operations#vulnerability-management",
    )
    return [str(f["ref"]) for f in due]
