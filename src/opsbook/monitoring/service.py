"""Monitoring services shared by the CLI, the REST API and the console."""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from opsbook.db import Database
from opsbook.monitoring import alerts, slo
from opsbook.monitoring.config import MonitoringConfig, load_monitoring
from opsbook.monitoring.probes import ProbeResult, run_all
from opsbook.monitoring.webhook import parse_webhook
from opsbook.workspace import Workspace

if TYPE_CHECKING:
    from opsbook.monitoring.slo_prometheus import PrometheusSlos


async def check(
    *, workspace: Workspace, environment: str, db: Database | None = None
) -> tuple[MonitoringConfig, list[ProbeResult]]:
    """Run every probe of ``environment`` once; store the results when ``db`` is given."""
    from opsbook.monitoring import store  # noqa: PLC0415

    config = load_monitoring(workspace, environment)
    results = await run_all(config, root=workspace.root)
    if db is not None:
        store.record_results(db, environment=environment, results=results)
    return config, results


def slo_statuses(
    *,
    db: Database,
    config: MonitoringConfig,
    now: int | None = None,
    prometheus: PrometheusSlos | None = None,
) -> list[dict[str, Any]]:
    """Budget and burn rates of every SLO of ``config``. PromQL (Sloth) SLOs come from
    ``prometheus``, the server's last evaluation, when given (so a request never waits for
    Prometheus), else they are evaluated now against ``monitoring.prometheus``."""
    from opsbook.monitoring import slo_prometheus  # noqa: PLC0415

    ts = now if now is not None else int(time.time())
    out = []
    for s in config.slos:
        if s.error_query:
            if prometheus is not None:
                status, error = prometheus.get(config.environment, s)
            elif not config.prometheus:
                status, error = None, slo_prometheus.NO_PROMETHEUS
            else:
                try:
                    query = slo_prometheus.http_query(config.prometheus)
                    status, error = slo_prometheus.evaluate(s, query=query, now=ts), None
                except RuntimeError as exc:
                    status, error = None, str(exc)
            out.append(slo_prometheus.status_dict(s, status=status, error=error))
            continue
        status = slo.evaluate(
            s, error_ratio=slo.probe_error_ratio(db, environment=config.environment, slo=s), now=ts
        )
        out.append({**status.to_dict(), "evaluated_by": "probes"})
    return out


def runbook_resolver(
    workspace: Workspace, cache: dict[str, Any] | None = None
) -> alerts.RunbookFor:
    """Runbook of an incoming alert: its ``runbook_url`` annotation (set by ingest), else
    the mapping of its environment (label ``environment``/``env``, default environment)."""
    from opsbook.errors import OpsbookError  # noqa: PLC0415

    memo: dict[str, Any] = cache if cache is not None else {}

    def config_of(env: str) -> MonitoringConfig | None:
        path = workspace.environments_dir / f"{env}.yaml"
        try:
            stamp = path.stat().st_mtime
        except OSError:
            return None
        key = f"monitoring.config:{env}"
        hit = memo.get(key)
        if hit and hit[0] == stamp:
            return hit[1]  # type: ignore[no-any-return]
        try:
            config = load_monitoring(workspace, env)
        except OpsbookError:
            config = None
        memo[key] = (stamp, config)
        return config

    batch: dict[str, MonitoringConfig | None] = {}  # one stat per environment and delivery

    def resolve(a: alerts.IncomingAlert) -> str | None:
        env = a.labels.get("environment") or a.labels.get("env") or workspace.default_environment
        if env not in batch:
            batch[env] = config_of(env)
        config = batch[env]
        if config is None:
            return None
        return config.runbook_for(alertname=a.alertname, service=a.labels.get("service"))

    return resolve


def ingest_alertmanager(
    *,
    db: Database,
    workspace: Workspace,
    body: Any,
    actor: str,
    cache: dict[str, Any] | None = None,
    now: datetime | None = None,
) -> alerts.IngestResult:
    """Validate and store one Alertmanager webhook delivery (all or nothing)."""
    meta, incoming = parse_webhook(body)
    return alerts.ingest(
        db,
        alerts=incoming,
        source="alertmanager",
        actor=actor,
        meta=meta,
        runbook_for=runbook_resolver(workspace, cache),
        now=now or datetime.now(UTC),
    )


def alert_view(row: Mapping[str, Any]) -> dict[str, Any]:
    """An alert for output: the stored row with the runbook link split into ref or URL."""
    out = dict(row)
    rb = out.get("runbook")
    out["runbook_ref"] = rb if rb and "#" in rb and "://" not in rb else None
    return out
