"""Probe results: compact samples, minute rollups that merge, windows, series and pruning;
the same SQL on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from opsbook.db import Database
from opsbook.monitoring import store
from opsbook.monitoring.probes import ProbeResult

T0 = 1_789_999_200  # an hour boundary


def r(ts: int, ok: bool = True, lat: int = 20, probe: str = "payment-health") -> ProbeResult:
    return ProbeResult(
        probe, "payment", "http", ok, lat, ts, "" if ok else "expected status == 200"
    )


def check_rollups(db: Database) -> None:
    store.record_results(db, environment="sandbox", results=[r(T0), r(T0 + 10, False, 900)])
    store.record_results(db, environment="sandbox", results=[r(T0 + 20), r(T0 + 70)])
    rows = db.query("SELECT minute, n, ok, lat_sum, lat_max FROM mon_rollups ORDER BY minute")
    assert rows == [
        {"minute": T0 // 60, "n": 3, "ok": 2, "lat_sum": 940, "lat_max": 900},
        {"minute": T0 // 60 + 1, "n": 1, "ok": 1, "lat_sum": 20, "lat_max": 20},
    ]
    w = store.window(
        db, environment="sandbox", probe=None, service="payment", start=T0, end=T0 + 120
    )
    assert w.n == 4 and w.error_ratio is not None and 0 < w.error_ratio < 0.5
    (latest,) = store.latest(db, environment="sandbox")
    assert latest["ts"] == T0 + 70 and latest["ok"] == 1
    failed = db.one("SELECT detail FROM mon_samples WHERE ok = 0")
    assert failed == {"detail": "expected status == 200"}
    assert db.query("SELECT detail FROM mon_samples WHERE ok = 1 AND detail IS NOT NULL") == []


def test_rollups_on_sqlite(db: Database) -> None:
    check_rollups(db)


@pytest.mark.postgres
def test_rollups_on_postgresql(fresh_pg: Database) -> None:
    check_rollups(fresh_pg)


@pytest.fixture
def month(db: Database) -> Iterator[Database]:
    results = [r(T0 + i * 10, ok=not 360 <= i < 420) for i in range(24 * 360)]  # a day
    store.record_results(db, environment="sandbox", results=results)
    yield db


def test_series_buckets_for_charts(month: Database) -> None:
    hourly = store.series(
        month, environment="sandbox", service="payment", start=T0, end=T0 + 86400, step=3600
    )
    assert len(hourly) == 24
    assert hourly[0][1] == 360 and hourly[0][2] == 360
    assert hourly[1][2] == 300  # the 10-minute outage in the second hour


def test_latency_window_counts_slow_minutes_as_bad(db: Database) -> None:
    store.record_results(db, environment="sandbox", results=[r(T0, lat=100), r(T0 + 60, lat=900)])
    w = store.latency_window(
        db,
        environment="sandbox",
        probe="payment-health",
        service=None,
        start=T0,
        end=T0 + 120,
        threshold_ms=500,
    )
    assert (w.n, w.ok) == (2, 1)


def test_prune_keeps_rollups_and_drops_old_samples(month: Database) -> None:
    dropped = store.prune(month, now=T0 + 3 * 86400)
    assert dropped == 24 * 360
    assert month.one("SELECT COUNT(*) AS n FROM mon_samples") == {"n": 0}
    assert month.one("SELECT SUM(n) AS n FROM mon_rollups") == {"n": 24 * 360}
