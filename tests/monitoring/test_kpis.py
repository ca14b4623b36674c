"""KPIs from Prometheus text (a real HTTP server exposing a prometheus_client registry) and
seasonal baselines with proposed thresholds."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import yaml
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from opsbook.db import Database
from opsbook.monitoring import baseline, kpis
from tests.monitoring.conftest import Site


def registry() -> tuple[CollectorRegistry, Counter, Histogram, Counter, Gauge]:
    r = CollectorRegistry()
    req = Counter("http_requests", "", ["status"], registry=r)
    lat = Histogram("http_request_duration_seconds", "", buckets=(0.01, 0.1, 1.0), registry=r)
    pay = Counter("bank_payments", "", ["status"], registry=r)
    queue = Gauge("bank_notification_queue_depth", "", registry=r)
    return r, req, lat, pay, queue


def test_kpis_between_two_scrapes(site: Site) -> None:
    r, req, lat, pay, queue = registry()
    site.content_type = "text/plain"
    site.body = generate_latest(r).decode()
    scraper = kpis.KpiScraper({"payment": site.url + "/metrics", "gone": "http://127.0.0.1:9/"})

    async def twice() -> dict[str, dict[str, float]]:
        async with httpx.AsyncClient() as client:
            first = await scraper.scrape(client)
            assert first == {"gone": {"up": 0.0}}
            for _ in range(90):
                req.labels("200").inc()
                lat.observe(0.005)
            for _ in range(10):
                req.labels("500").inc()
                lat.observe(0.5)
            pay.labels("succeeded").inc(30)
            pay.labels("failed").inc(3)
            queue.set(7)
            site.body = generate_latest(r).decode()
            return await scraper.scrape(client)

    values = asyncio.run(twice())["payment"]
    assert values["up"] == 1.0
    assert values["error_rate"] == pytest.approx(0.1)
    assert values["latency_p50"] == pytest.approx(5.56, abs=0.1)  # ms, interpolated in bucket
    assert 100 < values["latency_p99"] <= 1000
    assert values["queue_depth"] == 7
    assert values["payments_failed"] > 0 and values["request_rate"] > 0


def test_quantile_matches_histogram_quantile() -> None:
    buckets = [(0.1, 50.0), (0.5, 90.0), (1.0, 100.0), (float("inf"), 100.0)]
    assert kpis.quantile(0.5, buckets) == pytest.approx(0.1)
    assert kpis.quantile(0.9, buckets) == pytest.approx(0.5)
    assert kpis.quantile(0.95, buckets) == pytest.approx(0.75)
    assert kpis.quantile(0.5, []) is None


def test_baseline_respects_time_of_day_and_day_of_week(db: Database) -> None:
    monday = datetime(2026, 11, 2, tzinfo=UTC)  # a Monday
    values: dict[str, dict[str, float]] = {}
    for day in range(28):
        for hour in range(24):
            ts = monday + timedelta(days=day, hours=hour)
            busy = ts.weekday() < 5 and 9 <= hour < 17
            for minute in (0, 20, 40):
                per_min = (120.0 if busy else 20.0) + minute / 20
                values = {
                    "payment": {"request_rate": per_min, "error_rate": 0.001 * (1 + minute / 40)}
                }
                kpis.store_kpis(
                    db,
                    environment="sandbox",
                    values=values,
                    ts=int((ts + timedelta(minutes=minute)).timestamp()),
                )
    now = int((monday + timedelta(days=28)).timestamp())
    rate = baseline.baseline(
        db, environment="sandbox", service="payment", kpi="request_rate", days=28, now=now
    )
    slots = {s.label: s for s in rate.slots}
    assert len(slots) == 168
    assert slots["Mon 10:00"].median == pytest.approx(121)
    assert slots["Sun 10:00"].median == pytest.approx(21)
    assert slots["Mon 10:00"].threshold > slots["Sun 10:00"].threshold  # minima per slot
    errors = baseline.baseline(
        db, environment="sandbox", service="payment", kpi="error_rate", days=28, now=now
    )
    assert errors.threshold is not None and errors.threshold > 0.0015
    proposal = yaml.safe_load(baseline.proposal_yaml([rate, errors], days=28))
    assert proposal["kpi_thresholds"]["payment"]["error_rate"]["max"] == pytest.approx(
        errors.threshold, rel=1e-3
    )
    assert "min" in proposal["kpi_thresholds"]["payment"]["request_rate"]


def test_baseline_input_is_checked(db: Database) -> None:
    from opsbook.errors import ValidationError

    with pytest.raises(ValidationError, match="unknown KPI"):
        baseline.baseline(db, environment="sandbox", service="payment", kpi="vibes", days=7, now=0)
    with pytest.raises(ValidationError):
        baseline.baseline(
            db, environment="sandbox", service="payment", kpi="error_rate", days=0, now=0
        )
