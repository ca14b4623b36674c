"""Prometheus metrics of the server: requests by route and status, latency, executions by
state and the cluster's workers, queues and leader (read when scraped), this process's
dispatches. A registry per app, so several apps in one process (tests) do not collide."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response

from opsbook.executions.context import AppContext

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _Executions(Collector):
    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    def collect(self) -> Iterator[GaugeMetricFamily]:
        g = GaugeMetricFamily("opsbook_executions", "Executions by state", labels=["state"])
        for row in self.ctx.db.query("SELECT state, COUNT(*) AS n FROM executions GROUP BY state"):
            g.add_metric([str(row["state"])], float(row["n"]))
        yield g
        t = GaugeMetricFamily("opsbook_running_tasks", "Executions this process is driving")
        t.add_metric([], float(len(self.ctx.tasks)))
        yield t


_DISPATCH = {
    "sent": "Messages this process published to a queue",
    "send_failures": "Publishes the broker refused (the sweeper re-sends those dispatches)",
    "resent": "Unclaimed dispatches this process's sweeper sent again",
}


class _Cluster(Collector):
    """The cluster as the database sees it (ADR 0017 §8): every replica reports the same
    workers and queues; the leader gauge and dispatch counters are this process's."""

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    def collect(self) -> Iterator[Metric]:
        from opsbook.cluster.registry import db_now, list_workers  # noqa: PLC0415

        db = self.ctx.db
        workers = list_workers(db=db, include_ended=True)
        counts = GaugeMetricFamily(
            "opsbook_workers",
            "Registered workers and servers by kind and state",
            labels=["kind", "state"],
        )
        by_kind_state: dict[tuple[str, str], int] = {}
        for w in workers:
            by_kind_state[(w.kind, w.state)] = by_kind_state.get((w.kind, w.state), 0) + 1
        for (kind, state), n in sorted(by_kind_state.items()):
            counts.add_metric([kind, state], float(n))
        yield counts
        age = GaugeMetricFamily(
            "opsbook_worker_heartbeat_age_seconds",
            "Seconds since a live worker's last heartbeat (database clock)",
            labels=["worker", "kind"],
        )
        running = GaugeMetricFamily(
            "opsbook_worker_running_executions",
            "Running executions a live worker owns",
            labels=["worker"],
        )
        for w in workers:
            if w.state in ("alive", "draining"):
                age.add_metric([w.id, w.kind], max(w.heartbeat_age_s, 0.0))
                running.add_metric([w.id], float(len(w.running)))
        yield age
        yield running
        yield from self._queues(db_now(db))
        leader = GaugeMetricFamily(
            "opsbook_background_leader",
            "1 where this process runs the loop only one replica may run",
            labels=["loop"],
        )
        lock = self.ctx.leader
        if lock is not None:
            for loop in lock.loops:
                leader.add_metric([loop], 1.0 if lock.held else 0.0)
        yield leader
        metrics = self.ctx.dispatch_metrics
        snapshot = metrics.snapshot() if metrics is not None else {}
        for kind, doc in _DISPATCH.items():
            counter = CounterMetricFamily(f"opsbook_dispatch_{kind}", doc, labels=["queue"])
            for queue, n in sorted(snapshot.get(kind, {}).items()):
                counter.add_metric([queue], float(n))
            yield counter

    def _queues(self, now: float) -> Iterator[Metric]:
        rows = self.ctx.db.query(
            "SELECT queue, COUNT(*) AS n, MIN(dispatched_at) AS oldest FROM executions"
            " WHERE claimed_dispatch < dispatch"
            " AND state NOT IN ('succeeded', 'failed', 'aborted', 'skipped')"
            " GROUP BY queue ORDER BY queue"
        )
        waiting = GaugeMetricFamily(
            "opsbook_queue_waiting_executions",
            "Dispatched executions no worker has claimed yet",
            labels=["queue"],
        )
        oldest = GaugeMetricFamily(
            "opsbook_queue_oldest_waiting_seconds",
            "Age of the oldest unclaimed dispatch (alert: nobody consumes the queue)",
            labels=["queue"],
        )
        for row in rows:
            queue = str(row["queue"] or "")
            waiting.add_metric([queue], float(row["n"]))
            if row["oldest"]:
                since = datetime.fromisoformat(str(row["oldest"])).timestamp()
                oldest.add_metric([queue], max(now - since, 0.0))
        yield waiting
        yield oldest


class Metrics:
    def __init__(self, ctx: AppContext) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "opsbook_http_requests",
            "HTTP requests by route and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "opsbook_http_request_duration_seconds",
            "Time to answer, by route",
            ["route"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=self.registry,
        )
        self._children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}
        self.registry.register(_Executions(ctx))
        self.registry.register(_Cluster(ctx))
        from opsbook.monitoring.background import prometheus_slos  # noqa: PLC0415
        from opsbook.monitoring.metrics import MonitoringCollector  # noqa: PLC0415

        self.registry.register(
            MonitoringCollector(db=ctx.db, workspace=ctx.workspace, prometheus=prometheus_slos(ctx))
        )

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        # The labelled children are looked up once per (method, route, status): labels()
        # costs more than the count itself.
        children = self._children.get((method, route, status))
        if children is None:
            children = self._children[(method, route, status)] = (
                self.requests.labels(method, route, str(status)),
                self.latency.labels(route),
            )
        children[0].inc()
        children[1].observe(seconds)

    async def endpoint(self, request: Request) -> Response:
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE)


SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
    (
        b"content-security-policy",
        b"default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self';"
        b" frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    ),
]


def security_headers(*, hsts: bool) -> list[tuple[bytes, bytes]]:
    """The headers every answer carries (HSTS only when the server's cookies are secure)."""
    headers = list(SECURITY_HEADERS)
    if hsts:
        headers.append((b"strict-transport-security", b"max-age=31536000"))
    return headers


class MetricsMiddleware:
    """Pure ASGI middleware (no per-request task): counts each request by route template and
    adds the Server-Timing and security headers to every answer, in one send wrapper."""

    def __init__(self, app: Any, metrics: Metrics, headers: list[tuple[bytes, bytes]]) -> None:
        self.app = app
        self.metrics = metrics
        self.headers = headers

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        headers = self.headers

        async def send_wrapper(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                took = (time.perf_counter() - started) * 1000
                message["headers"] = [
                    *message.get("headers", []),
                    (b"server-timing", f"app;dur={took:.2f}".encode()),
                    *headers,
                ]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or "unmatched"
            self.metrics.observe(scope["method"], path, status, time.perf_counter() - started)
