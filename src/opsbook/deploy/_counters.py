"""The sandbox's counters turned into measurements: deltas between two samples of one slot
(``requests``, ``errors``, a cumulative latency histogram, payments) and Prometheus'
``histogram_quantile`` over the delta histogram."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

QUANTILE = 0.99


class CounterReset(Exception):
    """A counter went back between two samples (the process restarted)."""


def _delta(now: Any, before: Any, what: str) -> int:
    d = int(now) - int(before)
    if d < 0:
        raise CounterReset(f"the {what} counter went back ({before} -> {now})")
    return d


def sandbox_value(
    query: str, before: Mapping[str, Any] | None, now: Mapping[str, Any] | None, seconds: float
) -> tuple[float | None, int]:
    """(value, denominator) of one slot over one interval; (None, 0) for a missing slot."""
    if before is None or now is None:
        return None, 0
    if query == "error_ratio":
        requests = _delta(now["requests"], before["requests"], "requests")
        errors = _delta(now["errors"], before["errors"], "errors")
        return (errors / requests if requests else None), requests
    if query == "request_rate":
        requests = _delta(now["requests"], before["requests"], "requests")
        return requests / seconds, requests
    if query == "payment_success_rate":
        ok = _delta(now["payments"]["succeeded"], before["payments"]["succeeded"], "payments")
        bad = _delta(now["payments"]["failed"], before["payments"]["failed"], "payments")
        total = ok + bad
        return (ok / total if total else None), total
    if query == "p99_latency_ms":
        buckets = _delta_buckets(before["latency"]["buckets"], now["latency"]["buckets"])
        count = int(buckets[-1][1]) if buckets else 0
        q = histogram_quantile(QUANTILE, buckets)
        return (None if q is None else q * 1000.0), count
    raise ValueError(f"unknown sandbox query {query!r}")


def _le(value: Any) -> float:
    return math.inf if value in ("+Inf", "Inf", "inf") else float(value)


def _delta_buckets(before: Any, now: Any) -> list[tuple[float, float]]:
    old = {_le(le): float(n) for le, n in before}
    out = []
    for le, n in now:
        bound = _le(le)
        d = float(n) - old.get(bound, 0.0)
        if d < 0:
            raise CounterReset(f"the latency histogram went back (bucket le={le})")
        out.append((bound, d))
    return sorted(out)


def histogram_quantile(q: float, buckets: list[tuple[float, float]]) -> float | None:
    """Prometheus' ``histogram_quantile`` over cumulative ``(upper bound, count)`` buckets
    (the last one ``+Inf``): linear interpolation inside the bucket the rank falls in; the
    highest finite bound when it falls in ``+Inf``; None without observations (NaN there)."""
    if len(buckets) < 2 or not math.isinf(buckets[-1][0]):
        return None
    counts = [c for _, c in buckets]
    for i in range(1, len(counts)):  # Prometheus' fix for non-monotonic buckets
        counts[i] = max(counts[i], counts[i - 1])
    total = counts[-1]
    if total == 0:
        return None
    rank = q * total
    b = next(i for i, c in enumerate(counts) if c >= rank)
    if b == len(buckets) - 1:
        return buckets[-2][0]
    if b == 0 and buckets[0][0] <= 0:
        return buckets[0][0]
    start, end, count = 0.0, buckets[b][0], counts[b]
    if b > 0:
        start = buckets[b - 1][0]
        count -= counts[b - 1]
        rank -= counts[b - 1]
    return start + (end - start) * (rank / count)
