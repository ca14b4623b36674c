"""SLOs whose SLI is PromQL (Sloth ``sli.events``), evaluated against Prometheus.

Sloth writes the SLI as two queries with a ``{{.window}}`` placeholder: ``error_query`` counts
bad events and ``total_query`` all events. The error ratio over a window W is their quotient,
with W put in the placeholder, queried at the window's end. opsbook asks Prometheus for that
ratio over each window of the multi-window multi-burn-rate checks, and over the SLO's period.

In ``opsbook serve``, :class:`PrometheusSlos` is refreshed by the monitoring housekeeping in a
worker thread. The API, the console and ``/metrics`` read its last answers and never wait for
Prometheus. The CLI evaluates directly.
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Callable
from typing import Any

from opsbook.monitoring import slo
from opsbook.monitoring.config import MonitoringConfig, Slo

TIMEOUT = 5.0  # seconds per Prometheus query
_WINDOW = re.compile(r"\{\{\s*\.window\s*\}\}")

#: (PromQL, evaluation time in epoch seconds) -> the single value, or None when there is none
PromQuery = Callable[[str, int], float | None]


def prom_duration(seconds: int) -> str:
    """``3600`` -> ``1h``: the largest whole unit, as PromQL range selectors write it."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def ratio_query(s: Slo, window: str) -> str:
    """The error ratio of ``s`` over ``window`` as one PromQL expression."""
    if not s.error_query or not s.total_query:
        raise ValueError(f"SLO {s.name} has no PromQL SLI")
    return f"({_WINDOW.sub(window, s.error_query)}) / ({_WINDOW.sub(window, s.total_query)})"


def error_ratio(s: Slo, query: PromQuery) -> slo.ErrorRatio:
    """``slo.ErrorRatio`` for ``s``: None when Prometheus has no data (or no traffic: 0/0)."""

    def ratio(start: int, end: int) -> float | None:
        value = query(ratio_query(s, prom_duration(end - start)), end)
        if value is None or math.isnan(value) or math.isinf(value):
            return None
        return max(0.0, value)

    return ratio


def http_query(base_url: str, *, timeout: float = TIMEOUT) -> PromQuery:
    """A ``PromQuery`` against Prometheus' HTTP API (``/api/v1/query``). Errors raise
    RuntimeError with Prometheus' message."""
    import httpx  # noqa: PLC0415

    from opsbook.engine.runners.promql import read_result  # noqa: PLC0415

    url = base_url.rstrip("/") + "/api/v1/query"

    def query(expr: str, at: int) -> float | None:
        try:
            reply = httpx.get(url, params={"query": expr, "time": str(at)}, timeout=timeout)
            data: Any = reply.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise RuntimeError(f"Prometheus at {base_url}: {exc}") from exc
        if data.get("status") != "success":
            raise RuntimeError(f"Prometheus: {data.get('error', reply.status_code)}")
        value, _ = read_result(data.get("data") or {})
        return value

    return query


def evaluate(s: Slo, *, query: PromQuery, now: int) -> slo.SloStatus:
    return slo.evaluate(s, error_ratio=error_ratio(s, query), now=now)


def status_dict(
    s: Slo, *, status: slo.SloStatus | None = None, error: str | None = None
) -> dict[str, Any]:
    """The SLO for output, with how it is evaluated; ``error`` when Prometheus failed and
    neither ``status`` nor ``error`` while the server has not evaluated it yet."""
    base: dict[str, Any] = (
        status.to_dict()
        if status is not None
        else {
            "name": s.name,
            "service": s.service,
            "objective": s.objective,
            "period_days": s.period_days,
            "error_budget": s.budget,
            "error_ratio": None,
            "budget_remaining": None,
            "alert": None,
            "windows": [],
        }
    )
    base.update(
        evaluated_by="prometheus",
        error_query=s.error_query,
        total_query=s.total_query,
        error=error if error else (None if status is not None else "not evaluated yet"),
    )
    return base


class PrometheusSlos:
    """The last evaluation of every PromQL SLO, per environment (thread-safe)."""

    def __init__(self, query_for: Callable[[str], PromQuery] = http_query) -> None:
        self._query_for = query_for
        self._lock = threading.Lock()
        self._results: dict[tuple[str, str], tuple[slo.SloStatus | None, str | None]] = {}
        self.refreshed_at: float | None = None

    def refresh(self, config: MonitoringConfig, *, now: int) -> None:
        """Evaluate every PromQL SLO of ``config`` (blocking: call it from a thread)."""
        wanted = [s for s in config.slos if s.error_query]
        if not wanted:
            return
        results: dict[tuple[str, str], tuple[slo.SloStatus | None, str | None]] = {}
        if not config.prometheus:
            for s in wanted:
                results[(config.environment, s.name)] = (None, NO_PROMETHEUS)
        else:
            query = self._query_for(config.prometheus)
            for s in wanted:
                try:
                    results[(config.environment, s.name)] = (
                        evaluate(s, query=query, now=now),
                        None,
                    )
                except RuntimeError as exc:
                    results[(config.environment, s.name)] = (None, str(exc))
        with self._lock:
            self._results.update(results)
            self.refreshed_at = time.time()

    def get(self, environment: str, s: Slo) -> tuple[slo.SloStatus | None, str | None]:
        with self._lock:
            return self._results.get((environment, s.name), (None, None))


NO_PROMETHEUS = "monitoring.prometheus is not set for this environment"
