"""opsbook's own alert rules, evaluated by ``opsbook serve``: a probe failing
``failures_to_alert`` times in a row fires ``ProbeFailing`` (resolved by its next success);
an SLO whose window pair burns too fast fires ``ErrorBudgetBurn`` (page or ticket)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from opsbook.db import Database
from opsbook.monitoring import alerts, slo
from opsbook.monitoring.config import MonitoringConfig
from opsbook.monitoring.probes import ProbeResult

if TYPE_CHECKING:
    from opsbook.monitoring.slo_prometheus import PrometheusSlos

ACTOR = "system:monitoring"


@dataclass
class RuleState:
    """What the rules remember between rounds (per process; alerts themselves are stored)."""

    failures: dict[str, int] = field(default_factory=dict)
    firing: set[str] = field(default_factory=set)

    @classmethod
    def from_db(cls, db: Database) -> RuleState:
        """Pick up the rule alerts still firing (a restarted server resolves them later)."""
        import json  # noqa: PLC0415

        state = cls()
        for row in db.query(
            "SELECT labels FROM mon_alerts WHERE source = 'opsbook' AND status = 'firing'"
        ):
            labels = json.loads(row["labels"])
            env = labels.get("environment")
            if labels.get("probe"):
                state.firing.add(f"probe:{env}:{labels['probe']}")
            elif labels.get("slo"):
                state.firing.add(f"slo:{env}:{labels['slo']}")
            elif labels.get("kpi"):
                state.firing.add(f"kpi:{env}:{labels.get('service')}:{labels['kpi']}")
        return state


def _alert(
    *, labels: dict[str, str], annotations: dict[str, str], firing: bool, starts: datetime
) -> alerts.IncomingAlert:
    return alerts.IncomingAlert(
        fingerprint=alerts.label_fingerprint(labels),
        status="firing" if firing else "resolved",
        labels=labels,
        annotations=annotations,
        starts_at=alerts.iso(starts),
        ends_at=None if firing else alerts.iso(starts),
    )


def probe_alerts(
    *, config: MonitoringConfig, results: Sequence[ProbeResult], state: RuleState, now: datetime
) -> list[alerts.IncomingAlert]:
    """Alerts to fire or resolve after a round of probe results."""
    out = []
    for r in results:
        p = config.probe(r.probe)
        key = f"probe:{config.environment}:{r.probe}"
        labels = {
            "alertname": "ProbeFailing",
            "environment": config.environment,
            "service": r.service,
            "probe": r.probe,
            "severity": p.severity,
        }
        if r.ok:
            state.failures[key] = 0
            if key in state.firing:
                state.firing.discard(key)
                out.append(_alert(labels=labels, annotations={}, firing=False, starts=now))
            continue
        state.failures[key] = state.failures.get(key, 0) + 1
        if state.failures[key] >= p.failures_to_alert and key not in state.firing:
            state.firing.add(key)
            runbook = p.runbook or config.runbook_for(alertname="ProbeFailing", service=r.service)
            ann = {"summary": f"{r.probe} ({r.kind}) failing: {r.detail}"}
            if runbook:
                ann["runbook_url"] = runbook
            out.append(_alert(labels=labels, annotations=ann, firing=True, starts=now))
    return out


def slo_alerts(
    db: Database,
    *,
    config: MonitoringConfig,
    state: RuleState,
    now: datetime,
    prometheus: PrometheusSlos | None = None,
) -> list[alerts.IncomingAlert]:
    """Burn-rate alerts of every SLO: probe SLOs evaluated now, PromQL (Sloth) SLOs from
    ``prometheus``'s last evaluation (skipped while there is none)."""
    out = []
    ts = int(now.timestamp())
    for s in config.slos:
        if s.error_query:
            found = prometheus.get(config.environment, s)[0] if prometheus else None
            if found is None:
                continue
            status = found
        else:
            status = slo.evaluate(
                s,
                error_ratio=slo.probe_error_ratio(db, environment=config.environment, slo=s),
                now=ts,
            )
        key = f"slo:{config.environment}:{s.name}"
        level = status.alert
        labels = {
            "alertname": "ErrorBudgetBurn",
            "environment": config.environment,
            "service": s.service,
            "slo": s.name,
            "severity": level or "page",
        }
        if level and key not in state.firing:
            state.firing.add(key)
            runbook = config.runbook_for(alertname="ErrorBudgetBurn", service=s.service)
            fast = next(c for c in status.checks if c.firing)
            ann = {
                "summary": f"{s.name}: burn rate {fast.long_rate:.1f} over {fast.long // 60} min"
                f" (threshold {fast.factor:g})",
            }
            if runbook:
                ann["runbook_url"] = runbook
            out.append(_alert(labels=labels, annotations=ann, firing=True, starts=now))
        elif not level and key in state.firing:
            state.firing.discard(key)
            out.append(_alert(labels=labels, annotations={}, firing=False, starts=now))
    return out


def kpi_alerts(
    *,
    config: MonitoringConfig,
    values: dict[str, dict[str, float]],
    state: RuleState,
    now: datetime,
) -> list[alerts.IncomingAlert]:
    """Threshold rules on KPIs (``monitoring.kpi_thresholds``, e.g. from a baseline)."""
    out = []
    for service, rules in config.kpi_thresholds.items():
        for kpi, (bound, limit) in rules.items():
            value = values.get(service, {}).get(kpi)
            if value is None:
                continue
            breached = value > limit if bound == "max" else value < limit
            key = f"kpi:{config.environment}:{service}:{kpi}"
            labels = {
                "alertname": "KpiThreshold",
                "environment": config.environment,
                "service": service,
                "kpi": kpi,
                "severity": "ticket",
            }
            if breached and key not in state.firing:
                state.firing.add(key)
                ann = {"summary": f"{service} {kpi} = {value:.4g} ({bound} {limit:g})"}
                runbook = config.runbook_for(alertname="KpiThreshold", service=service)
                if runbook:
                    ann["runbook_url"] = runbook
                out.append(_alert(labels=labels, annotations=ann, firing=True, starts=now))
            elif not breached and key in state.firing:
                state.firing.discard(key)
                out.append(_alert(labels=labels, annotations={}, firing=False, starts=now))
    return out


def apply(
    db: Database,
    *,
    config: MonitoringConfig,
    fired: Sequence[alerts.IncomingAlert],
    now: datetime | None = None,
) -> alerts.IngestResult | None:
    """Store the rules' alerts (resolutions of alerts never stored are harmless)."""
    if not fired:
        return None
    return alerts.ingest(
        db,
        alerts=fired,
        source="opsbook",
        actor=ACTOR,
        now=now or datetime.now(UTC),
        runbook_for=lambda a: config.runbook_for(
            alertname=a.alertname, service=a.labels.get("service")
        ),
        meta={"environment": config.environment},
    )
