"""Probe alerts from a one-off check (``opsbook monitor check``): the rules `opsbook serve`
applies after each round, with their memory rebuilt from the database, so a team that only
runs the CLI (from cron, say) gets ``ProbeFailing`` alerts, and their resolution, too.

``serve`` remembers consecutive failures in memory; here they are counted from the stored
samples (the results of this check are stored first), and the alerts still firing come from
``mon_alerts``. Both paths store alerts by label fingerprint, so a check while ``serve`` runs
does not duplicate an alert.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from opsbook.db import Database
from opsbook.monitoring import alerts, rules
from opsbook.monitoring.config import MonitoringConfig
from opsbook.monitoring.probes import ProbeResult


def raise_probe_alerts(
    db: Database,
    *,
    config: MonitoringConfig,
    results: Sequence[ProbeResult],
    now: datetime | None = None,
) -> list[alerts.IncomingAlert]:
    """Fire or resolve the probe alerts the stored ``results`` call for; returns them."""
    when = now or datetime.now(UTC)
    state = rules.RuleState.from_db(db)
    for r in results:
        if not r.ok:
            key = f"probe:{config.environment}:{r.probe}"
            limit = config.probe(r.probe).failures_to_alert
            # probe_alerts counts this result itself: start from the failures before it
            state.failures[key] = _failing_streak(db, config.environment, r, limit) - 1
    fired = rules.probe_alerts(config=config, results=results, state=state, now=when)
    rules.apply(db, config=config, fired=fired, now=when)
    return fired


def _failing_streak(db: Database, environment: str, r: ProbeResult, limit: int) -> int:
    """Consecutive failed samples of ``r``'s probe up to and including ``r`` (at most
    ``limit``; at least 1, ``r`` itself)."""
    rows = db.query(
        "SELECT s.ok FROM mon_samples s JOIN mon_probes p ON p.id = s.probe_id"
        " WHERE p.environment = ? AND p.name = ? AND s.ts <= ? ORDER BY s.ts DESC LIMIT ?",
        (environment, r.probe, r.ts, max(1, limit)),
    )
    streak = 0
    for row in rows:
        if int(row["ok"]):
            break
        streak += 1
    return max(1, streak)
