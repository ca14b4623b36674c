"""opsbook's own monitoring metrics for ``/metrics`` (counted when scraped): alerts by status
and severity, the latest result and latency of every probe, SLO budgets left.

Register with ``registry.register(MonitoringCollector(db=ctx.db, workspace=ctx.workspace))``
(the server's metrics module owns the registry)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from opsbook.db import Database
from opsbook.monitoring.slo_prometheus import PrometheusSlos
from opsbook.workspace import Workspace


class MonitoringCollector(Collector):
    def __init__(
        self, *, db: Database, workspace: Workspace, prometheus: PrometheusSlos | None = None
    ) -> None:
        self.db = db
        self.workspace = workspace
        self.prometheus = prometheus or PrometheusSlos()  # never queried from here

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from opsbook.errors import OpsbookError  # noqa: PLC0415
        from opsbook.monitoring import store  # noqa: PLC0415
        from opsbook.monitoring.config import (  # noqa: PLC0415
            load_monitoring,
            monitored_environments,
        )
        from opsbook.monitoring.service import slo_statuses  # noqa: PLC0415

        alerts = GaugeMetricFamily(
            "opsbook_alerts", "Alerts by status and severity", labels=["status", "severity"]
        )
        for row in self.db.query(
            "SELECT status, severity, COUNT(*) AS n FROM mon_alerts GROUP BY status, severity"
        ):
            alerts.add_metric([str(row["status"]), str(row["severity"])], float(row["n"]))
        yield alerts
        up = GaugeMetricFamily(
            "opsbook_probe_up",
            "1 if the probe's latest check passed",
            labels=["environment", "service", "probe"],
        )
        latency = GaugeMetricFamily(
            "opsbook_probe_latency_seconds",
            "Duration of the probe's latest check",
            labels=["environment", "service", "probe"],
        )
        budget = GaugeMetricFamily(
            "opsbook_slo_error_budget_remaining",
            "Share of the SLO's error budget left",
            labels=["environment", "service", "slo"],
        )
        for env in monitored_environments(self.workspace):
            for r in store.latest(self.db, environment=env):
                key = [env, str(r["service"]), str(r["probe"])]
                up.add_metric(key, float(r["ok"]))
                latency.add_metric(key, int(r["latency_ms"]) / 1000)
            try:
                config = load_monitoring(self.workspace, env)
            except OpsbookError:
                continue
            for s in slo_statuses(db=self.db, config=config, prometheus=self.prometheus):
                left = s.get("budget_remaining")
                if isinstance(left, int | float):
                    budget.add_metric([env, str(s["service"]), str(s["name"])], float(left))
        yield up
        yield latency
        yield budget
