"""The morning health check report: probes now and over the last 24 h (hourly charts), error
budgets, the night's alerts, resource usage and backups; Markdown and HTML, stored with the
execution of ``system-monitoring#morning-health-check`` that it belongs to."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from opsbook.db import Database
from opsbook.errors import NotFoundError
from opsbook.monitoring import alerts, store
from opsbook.monitoring.config import MonitoringConfig
from opsbook.monitoring.probes import ProbeResult
from opsbook.monitoring.render import health_html, health_markdown

if TYPE_CHECKING:
    from opsbook.monitoring.slo_prometheus import PrometheusSlos


def health_data(
    db: Database,
    *,
    config: MonitoringConfig,
    results: Sequence[ProbeResult],
    now: datetime | None = None,
    execution_id: str | None = None,
    resources: Mapping[str, Any] | None = None,
    prometheus: PrometheusSlos | None = None,
) -> dict[str, Any]:
    """The morning health check's data. PromQL SLOs come from ``prometheus`` (the server's
    last evaluation) when given, else from Prometheus now."""
    when = now or datetime.now(UTC)
    end = (int(when.timestamp()) // 3600 + 1) * 3600
    start = end - 24 * 3600
    hours = [datetime.fromtimestamp(start + h * 3600, UTC).strftime("%H:00") for h in range(24)]
    probes = []
    for r in results:
        buckets = {
            b: (n, ok, mx)
            for b, n, ok, mx in store.series(
                db, environment=config.environment, probe=r.probe, start=start, end=end, step=3600
            )
        }
        hourly = [
            (buckets[start + h * 3600][1] / buckets[start + h * 3600][0])
            if start + h * 3600 in buckets
            else None
            for h in range(24)
        ]
        day = store.window(
            db, environment=config.environment, probe=r.probe, service=None, start=start, end=end
        )
        probes.append(
            {
                "service": r.service,
                "probe": r.probe,
                "ok": r.ok,
                "detail": r.detail,
                "latency_ms": r.latency_ms,
                "availability_24h": day.availability,
                "max_latency_ms": max([b[2] for b in buckets.values()], default=r.latency_ms),
                "hourly": hourly,
            }
        )
    ts = int(when.timestamp())
    from opsbook.monitoring.service import slo_statuses  # noqa: PLC0415

    slos = [
        {**s, "budget_note": _budget_note(s)}
        for s in slo_statuses(db=db, config=config, now=ts, prometheus=prometheus)
    ]
    night = alerts.list_alerts(db, status=None, since=when - timedelta(hours=24), now=when)
    ok = all(p["ok"] for p in probes) and not any(
        a["status"] == "firing" and not a["acked_by"] for a in night
    )
    return {
        "environment": config.environment,
        "generated": when.strftime("%Y-%m-%d %H:%M"),
        "execution_id": execution_id,
        "hours": hours,
        "probes": probes,
        "slos": slos,
        "alerts": [
            {k: a[k] for k in ("starts_at", "alertname", "severity", "status", "acked_by")}
            for a in night
        ],
        "resources": dict(resources or {}),
        "backups": _backups(db, environment=config.environment, now=when),
        "ok": ok,
    }


def _budget_note(slo: Mapping[str, Any]) -> str | None:
    """Why an SLO has no remaining budget figure (None when it has one)."""
    if slo.get("budget_remaining") is not None:
        return None
    if slo.get("error"):
        return f"Prometheus: {slo['error']}"
    return f"no probe results for {slo['service']} in the last {slo['period_days']} days"


BACKUP_CHECK = ("backup-recovery", "backup-verification")


def _backups(db: Database, *, environment: str, now: datetime) -> str:
    """The last backup in the catalogue (:mod:`opsbook.backup`) with its age and its
    verification by restore, and whether the verification procedure ran in the last 24 h."""
    last = db.one(
        "SELECT id, state, finished_at, stored_bytes, verified_at, verify_ok FROM backups"
        " WHERE environment = ? ORDER BY started_at DESC LIMIT 1",
        (environment,),
    )
    if last is None:
        head = f"No backup of {environment} in the catalogue: take one (opsbook backups take). "
    else:
        age_h = now - datetime.fromisoformat(str(last["finished_at"]).replace("Z", "+00:00"))
        hours = age_h.total_seconds() / 3600
        verified = (
            "never verified by restore"
            if last["verified_at"] is None
            else ("verified by restore" if last["verify_ok"] else "FAILED its verification")
            + f" at {str(last['verified_at'])[:16].replace('T', ' ')} UTC"
        )
        head = (
            f"The last backup {last['id']} is {last['state']}, {hours:.1f} h old,"
            f" {int(last['stored_bytes']) / 2**20:.1f} MiB, {verified}. "
        )
    row = db.one(
        "SELECT id, state, finished_at, updated_at FROM executions WHERE runbook_id = ?"
        " AND procedure_id = ? AND environment = ? AND updated_at >= ?"
        " ORDER BY updated_at DESC LIMIT 1",
        (*BACKUP_CHECK, environment, alerts.iso(now - timedelta(hours=24))),
    )
    ref = "#".join(BACKUP_CHECK)
    if row is None:
        return head + f"There was no {ref} run in the last 24 h: run it."
    at = str(row["finished_at"] or row["updated_at"])[:16].replace("T", " ")
    return head + f"The last {ref} {row['state']} at {at} UTC (execution {str(row['id'])[:8]})."


def store_report(
    db: Database, *, execution_id: str, environment: str, data: Mapping[str, Any]
) -> tuple[str, str]:
    """Render and store (replace) the report of ``execution_id``; (markdown, html)."""
    md, html = health_markdown(dict(data)), health_html(dict(data))
    with db.transaction():
        db.execute("DELETE FROM mon_health_reports WHERE execution_id = ?", (execution_id,))
        db.execute(
            "INSERT INTO mon_health_reports (execution_id, environment, created_at, markdown, html)"
            " VALUES (?, ?, ?, ?, ?)",
            (execution_id, environment, alerts.iso(datetime.now(UTC)), md, html),
        )
    return md, html


def get_report(db: Database, *, execution_id: str) -> dict[str, Any]:
    row = db.one(
        "SELECT * FROM mon_health_reports WHERE execution_id = ? OR execution_id LIKE ?",
        (execution_id, f"{execution_id}%"),
    )
    if row is None:
        raise NotFoundError(
            f"no health check report for execution {execution_id}",
            hint="reports are made when a morning-health-check run finishes under opsbook serve, "
            "or with `opsbook monitor health-report --execution ID`",
        )
    return row


def list_reports(db: Database, *, limit: int = 30) -> list[dict[str, Any]]:
    return db.query(
        "SELECT execution_id, environment, created_at FROM mon_health_reports"
        " ORDER BY created_at DESC LIMIT ?",
        (limit,),
    )
