"""KPIs per service from Prometheus text exposition (the sandbox's ``/metrics``): availability
of the endpoint, request rate, 5xx error rate, p50/p95/p99 latency, payments succeeded and
failed per minute, notification queue depth. Rates need two scrapes: :class:`KpiScraper`
keeps the previous one."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from opsbook.db import Database

#: KPI name -> True when a higher value is worse (thresholds are maxima), False for minima.
KPIS: dict[str, bool] = {
    "up": False,
    "request_rate": False,
    "error_rate": True,
    "latency_p50": True,
    "latency_p95": True,
    "latency_p99": True,
    "payments_succeeded": False,
    "payments_failed": True,
    "queue_depth": True,
}


@dataclass(frozen=True)
class Snapshot:
    ts: float
    requests: float
    errors: float
    buckets: tuple[tuple[float, float], ...]  # (le, cumulative count)
    payments: Mapping[str, float]
    queue: float | None


def parse_metrics(text: str, ts: float) -> Snapshot:
    from prometheus_client.parser import text_string_to_metric_families  # noqa: PLC0415

    requests = errors = 0.0
    buckets: dict[float, float] = {}
    payments: dict[str, float] = {}
    queue = None
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == "http_requests_total":
                requests += s.value
                if str(s.labels.get("status", "")).startswith("5"):
                    errors += s.value
            elif s.name == "http_request_duration_seconds_bucket":
                le = float(s.labels["le"])
                buckets[le] = buckets.get(le, 0.0) + s.value
            elif s.name == "bank_payments_total":
                key = str(s.labels.get("status", ""))
                payments[key] = payments.get(key, 0.0) + s.value
            elif s.name == "bank_notification_queue_depth":
                queue = s.value
    return Snapshot(ts, requests, errors, tuple(sorted(buckets.items())), payments, queue)


def quantile(q: float, buckets: Sequence[tuple[float, float]]) -> float | None:
    """Prometheus ``histogram_quantile`` over cumulative (le, count) buckets, in seconds."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    total = buckets[-1][1]
    rank = q * total
    prev_le, prev_count = 0.0, 0.0
    for le, count in buckets:
        if count >= rank:
            if math.isinf(le):
                return prev_le
            if count == prev_count:
                return le
            return prev_le + (le - prev_le) * (rank - prev_count) / (count - prev_count)
        prev_le, prev_count = le, count
    return prev_le


def kpis_between(a: Snapshot, b: Snapshot) -> dict[str, float]:
    """KPIs over the interval from snapshot ``a`` to ``b`` (counter resets read as 0)."""
    dt = max(b.ts - a.ts, 1e-6)
    d_req = max(0.0, b.requests - a.requests)
    d_err = max(0.0, b.errors - a.errors)
    out = {"up": 1.0, "request_rate": d_req / dt, "error_rate": d_err / d_req if d_req else 0.0}
    prev = dict(a.buckets)
    delta = [(le, max(0.0, c - prev.get(le, 0.0))) for le, c in b.buckets]
    for q, name in ((0.5, "latency_p50"), (0.95, "latency_p95"), (0.99, "latency_p99")):
        v = quantile(q, delta)
        if v is not None:
            out[name] = v * 1000  # ms
    for status, name in (("succeeded", "payments_succeeded"), ("failed", "payments_failed")):
        if status in b.payments:
            out[name] = max(0.0, b.payments[status] - a.payments.get(status, 0.0)) / dt * 60
    if b.queue is not None:
        out["queue_depth"] = b.queue
    return out


@dataclass
class KpiScraper:
    """Scrapes each service's metrics URL; the KPIs of the interval since its last scrape."""

    urls: Mapping[str, str]
    last: dict[str, Snapshot] = field(default_factory=dict)

    async def scrape(self, client: Any) -> dict[str, dict[str, float]]:
        out: dict[str, dict[str, float]] = {}
        for service, url in self.urls.items():
            try:
                reply = await client.get(url, timeout=5.0)
                reply.raise_for_status()
                snap = parse_metrics(reply.text, time.time())
            except Exception:
                out[service] = {"up": 0.0}
                continue
            before = self.last.get(service)
            self.last[service] = snap
            if before is not None:
                out[service] = kpis_between(before, snap)
        return out


def store_kpis(
    db: Database, *, environment: str, values: Mapping[str, Mapping[str, float]], ts: int
) -> int:
    rows = [
        (environment, service, kpi, ts, float(v))
        for service, kv in values.items()
        for kpi, v in kv.items()
        if math.isfinite(v)
    ]
    with db.transaction():
        for row in rows:
            db.execute(
                "INSERT INTO mon_kpis (environment, service, kpi, ts, value) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (environment, service, kpi, ts) DO UPDATE SET value = excluded.value",
                row,
            )
    return len(rows)


def latest_kpis(db: Database, *, environment: str) -> dict[str, dict[str, float]]:
    rows = db.query(
        "SELECT k.service, k.kpi, k.value FROM mon_kpis k WHERE k.environment = ? AND k.ts ="
        " (SELECT MAX(ts) FROM mon_kpis m WHERE m.environment = k.environment"
        " AND m.service = k.service AND m.kpi = k.kpi)",
        (environment,),
    )
    out: dict[str, dict[str, float]] = {}
    for r in rows:
        out.setdefault(str(r["service"]), {})[str(r["kpi"])] = float(r["value"])
    return out
