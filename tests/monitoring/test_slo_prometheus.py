"""PromQL (Sloth) SLIs: the window placeholder, the ratio query, missing data, and the
server-side cache of evaluations. The real Prometheus path is in test_integration_prometheus."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest

from opsbook.monitoring.config import load_monitoring
from opsbook.monitoring.service import slo_statuses
from opsbook.monitoring.slo_prometheus import (
    NO_PROMETHEUS,
    PrometheusSlos,
    prom_duration,
    ratio_query,
)
from tests.monitoring.conftest import make_ws
from tests.monitoring.test_config import SLOTH

ENV = """\
name: sandbox
monitoring: {{prometheus: "{url}", sloth: [payment-slo.yaml]}}
services:
  - name: payment
    probes:
      - {{name: payment-health, http: {{url: "http://127.0.0.1:9/health"}}}}
"""


def test_prometheus_durations() -> None:
    assert [prom_duration(s) for s in (300, 1800, 3600, 7200, 86400, 30 * 86400, 90)] == [
        "5m",
        "30m",
        "1h",
        "2h",
        "1d",
        "30d",
        "90s",
    ]


def _ws(tmp_path: Path, url: str = "http://127.0.0.1:9") -> object:
    ws = make_ws(tmp_path / "ws", ENV.format(url=url))
    (ws.root / "payment-slo.yaml").write_text(SLOTH, encoding="utf-8")
    return ws


def test_the_window_goes_into_both_queries(tmp_path: Path) -> None:
    config = load_monitoring(_ws(tmp_path), "sandbox")  # type: ignore[arg-type]
    (slo,) = config.slos
    q = ratio_query(slo, "6h")
    assert "{{" not in q and q.count("[6h]") == 2
    assert q.startswith("(sum(rate(") and ") / (sum(rate(" in q


def test_cache_evaluates_every_window_and_reports_failures(tmp_path: Path) -> None:
    config = load_monitoring(_ws(tmp_path), "sandbox")  # type: ignore[arg-type]
    (slo,) = config.slos
    asked: list[tuple[str, int]] = []

    def query(expr: str, at: int) -> float | None:
        asked.append((expr, at))
        if "[30d]" in expr:
            return None  # Prometheus keeps less than the period: no period figure
        return math.nan if "[3d]" in expr else 0.02  # 3d: no traffic (0/0)

    cache = PrometheusSlos(query_for=lambda url: query)
    assert cache.get("sandbox", slo) == (None, None)
    cache.refresh(config, now=1_000_000)
    status, error = cache.get("sandbox", slo)
    assert error is None and status is not None
    assert {at for _, at in asked} == {1_000_000}
    windows = {c.long: c for c in status.checks}
    assert windows[3600].long_rate == pytest.approx(20.0)  # 2% errors / 0.1% budget
    assert windows[72 * 3600].long_rate is None and not windows[72 * 3600].firing
    assert status.alert == "page" and status.error_ratio is None

    def broken(expr: str, at: int) -> float | None:
        raise RuntimeError("Prometheus: bad_data")

    failing = PrometheusSlos(query_for=lambda url: broken)
    failing.refresh(config, now=1)
    assert failing.get("sandbox", slo) == (None, "Prometheus: bad_data")


def test_readers_never_query_and_say_what_is_missing(tmp_path: Path, db) -> None:  # type: ignore[no-untyped-def]
    config = load_monitoring(_ws(tmp_path), "sandbox")  # type: ignore[arg-type]
    (row,) = slo_statuses(db=db, config=config, prometheus=PrometheusSlos())
    assert row["evaluated_by"] == "prometheus" and row["error"] == "not evaluated yet"
    no_url = dataclasses.replace(config, prometheus=None)
    cache = PrometheusSlos()
    cache.refresh(no_url, now=1)
    (row,) = slo_statuses(db=db, config=no_url, prometheus=cache)
    assert row["error"] == NO_PROMETHEUS
    (row,) = slo_statuses(db=db, config=no_url)  # the CLI: evaluated now, same answer
    assert row["error"] == NO_PROMETHEUS


def test_burn_alerts_fire_from_the_last_evaluation(tmp_path: Path, db) -> None:  # type: ignore[no-untyped-def]
    from datetime import UTC, datetime

    from opsbook.monitoring import rules

    config = load_monitoring(_ws(tmp_path), "sandbox")  # type: ignore[arg-type]
    now = datetime.fromtimestamp(1_000_000, UTC)
    state = rules.RuleState()
    assert rules.slo_alerts(db, config=config, state=state, now=now) == []  # not evaluated
    cache = PrometheusSlos(query_for=lambda url: lambda expr, at: 0.05)
    cache.refresh(config, now=1_000_000)
    (fired,) = rules.slo_alerts(db, config=config, state=state, now=now, prometheus=cache)
    assert fired.labels["alertname"] == "ErrorBudgetBurn"
    assert fired.labels["slo"] == "payment-requests-availability"
    assert fired.labels["severity"] == "page" and fired.status == "firing"
