"""What every sandbox service process has: settings, JSON logs, metrics, the fault view, the
database pool and the health checks. Imported only inside service processes."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
)

from opsbook.sandbox.containment import ContainmentView
from opsbook.sandbox.credential import CredentialView
from opsbook.sandbox.endpoint import EndpointView
from opsbook.sandbox.faults import FaultView
from opsbook.sandbox.iam import TokenBook
from opsbook.sandbox.jsonlog import JsonLog
from opsbook.sandbox.ledger import Ledger, LedgerUnavailable

T = TypeVar("T")
NAMESPACE = "banking-platform-sandbox"
MEMORY_WARN_BYTES = 256 * 1024 * 1024
MEMORY_LIMIT_BYTES = 512 * 1024 * 1024


@dataclass(frozen=True)
class ReplicaSettings:
    service: str
    replica: str
    version: str
    revision: int
    bug: bool
    data_dir: Path
    database_url: str
    network_port: int
    disk_quota_bytes: int
    pool_size: int = 10
    latency_ms: int = 0  # the release's latency regression, added to each API request
    fail_rate: float = 0.0  # the release's share of writes answered 500
    requires: tuple[tuple[str, str], ...] = ()  # (table, column) the release cannot run without


class Metrics:
    def __init__(self, service: str) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        r = self.registry
        self.requests = Counter(
            "http_requests",
            "HTTP requests served",
            ["namespace", "service", "route", "method", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "http_request_duration_seconds",
            "Request latency",
            ["service", "route", "method"],
            registry=r,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.errors = Counter(
            "http_errors", "Requests that failed (5xx)", ["service", "route", "kind"], registry=r
        )
        self.transfers = Counter("bank_transfers", "Transfers by outcome", ["status"], registry=r)
        self.payments = Counter("bank_payments", "Payments by outcome", ["status"], registry=r)
        self.accounts = Counter("bank_accounts_opened", "Accounts opened", registry=r)
        self.sent = Counter("bank_notifications_sent", "Notifications sent", registry=r)
        self.queue = Gauge("bank_notification_queue_depth", "Notifications waiting", registry=r)
        self.ledger_ok = Gauge(
            "bank_ledger_balance_check", "1 when the ledger invariants hold", registry=r
        )
        self.ledger_total = Gauge(
            "bank_ledger_entries_sum_cents", "Sum of all ledger entries (must be 0)", registry=r
        )
        self.pool_size = Gauge("db_pool_size", "Database connections in the pool", registry=r)
        self.pool_in_use = Gauge(
            "db_pool_connections_in_use", "Connections checked out", registry=r
        )
        self.pool_wait = Histogram(
            "db_pool_wait_seconds",
            "Time waiting for a connection",
            registry=r,
            buckets=(0.001, 0.01, 0.1, 0.5, 1, 2.5),
        )
        self.db_errors = Counter("db_errors", "Database errors", ["kind"], registry=r)
        self.network = Histogram(
            "payment_network_request_duration_seconds",
            "Calls to the payment network",
            ["outcome"],
            registry=r,
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5),
        )
        self.logins = Counter("auth_login_attempts", "Login attempts", ["outcome"], registry=r)
        self.login_failures = Counter("auth_login_failures", "Failed logins", registry=r)
        self.tls_expiry = Gauge(
            "tls_certificate_expiry_seconds",
            "Seconds until the sandbox certificate expires",
            registry=r,
        )
        self.disk_used = Gauge(
            "sandbox_disk_usage_bytes", "Bytes used on the data volume", registry=r
        )
        self.disk_quota = Gauge("sandbox_disk_quota_bytes", "Size of the data volume", registry=r)
        self.info = Gauge(
            "bank_build_info", "The running build", ["service", "version", "replica"], registry=r
        )


class Pool:
    """A bounded pool of database connections (the permits of a semaphore, as in SQLAlchemy's
    QueuePool). The ``db-connections-exhausted`` fault checks every permit out and holds it."""

    def __init__(self, size: int, metrics: Metrics) -> None:
        self.size = size
        self.in_use = 0
        self._sem = asyncio.Semaphore(size)
        self._leaked = 0
        self._metrics = metrics
        metrics.pool_size.set(size)

    async def acquire(self, timeout: float) -> None:
        started = time.perf_counter()
        try:
            await asyncio.wait_for(self._sem.acquire(), timeout)
        except TimeoutError:
            self._metrics.db_errors.labels("pool_timeout").inc()
            raise LedgerUnavailable(
                f"connection pool exhausted: {self.in_use} of {self.size} connections in use, "
                f"timed out after {timeout:g}s waiting for one"
            ) from None
        self._metrics.pool_wait.observe(time.perf_counter() - started)
        self.in_use += 1
        self._metrics.pool_in_use.set(self.in_use)

    def release(self) -> None:
        self.in_use -= 1
        self._metrics.pool_in_use.set(self.in_use)
        self._sem.release()

    async def leak_one(self, timeout: float) -> bool:
        """Check one more connection out and hold it, waiting at most ``timeout`` (so the
        fault's loop notices a clear while connections are still busy); True if one was held."""
        try:
            await asyncio.wait_for(self._sem.acquire(), timeout)
        except TimeoutError:
            return False
        self.in_use += 1
        self._metrics.pool_in_use.set(self.in_use)
        self._leaked += 1
        return True

    def return_leaked(self) -> int:
        count = self._leaked
        for _ in range(count):
            self.release()
        self._leaked = 0
        return count

    @property
    def leaked(self) -> int:
        return self._leaked


class Runtime:
    """The per-process state shared by the routes and background tasks of one service."""

    def __init__(self, settings: ReplicaSettings) -> None:
        self.settings = settings
        self.started_at = time.time()
        self.log = JsonLog(
            settings.data_dir / "logs" / f"{settings.service}.log",
            service=settings.service,
            replica=settings.replica,
            version=settings.version,
        )
        self.metrics = Metrics(settings.service)
        self.metrics.info.labels(settings.service, settings.version, settings.replica).set(1)
        self.metrics.disk_quota.set(settings.disk_quota_bytes)
        self.faults = FaultView(settings.data_dir, settings.service)
        self.tokens = TokenBook(settings.data_dir)
        self.containment = ContainmentView(settings.data_dir)
        pg = settings.database_url.startswith(("postgresql://", "postgres://"))
        self.endpoint = EndpointView(settings.data_dir)
        self.ledger = Ledger(
            settings.database_url,
            gate=self._gate,
            credential=CredentialView(settings.data_dir) if pg else None,
            endpoint=self.endpoint,
        )
        self.pool = Pool(settings.pool_size, self.metrics)
        self.executor = ThreadPoolExecutor(settings.pool_size + 2, "db")
        self.leak: list[bytes] = []
        self.health_probes = 0
        self.requests_served = 0
        self._disk: tuple[float, int] = (0.0, 0)
        self.extra: dict[str, Any] = {}  # per-service objects (the payment network client)

    def _gate(self, write: bool) -> None:
        end = self.endpoint.current()
        if end and end.get("fenced"):
            self.metrics.db_errors.labels("connect").inc()
            raise LedgerUnavailable(
                f"the ledger is fenced ({end.get('reason')}): its region is being failed over"
            )
        active = self.faults.active()
        if "db-down" in active:
            self.metrics.db_errors.labels("connect").inc()
            raise LedgerUnavailable(
                "could not connect to the ledger database: connection timed out "
                "(no route to the database host)"
            )
        if write and self.disk_usage() >= self.settings.disk_quota_bytes:
            self.metrics.db_errors.labels("disk_full").inc()
            raise LedgerUnavailable("database or disk is full: [Errno 28] No space left on device")

    async def db(self, fn: Callable[..., T], *args: Any, timeout: float = 2.0, **kw: Any) -> T:
        """Run a ledger operation on a pooled connection (in the database thread pool)."""
        await self.pool.acquire(timeout)
        try:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self.executor, lambda: fn(*args, **kw))
        finally:
            self.pool.release()

    def disk_usage(self) -> int:
        """Bytes used in the data directory (apparent sizes), cached for a second."""
        now = time.monotonic()
        if now - self._disk[0] > 1.0:
            total = 0
            for root, _dirs, files in os.walk(self.settings.data_dir):
                for name in files:
                    try:
                        total += os.stat(os.path.join(root, name)).st_size
                    except OSError:
                        continue
            self._disk = (now, total)
            self.metrics.disk_used.set(total)
        return self._disk[1]

    def rss(self) -> int:
        try:
            with open("/proc/self/statm", encoding="ascii") as f:
                return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except OSError:
            import resource  # noqa: PLC0415 - non-Linux fallback (peak, not current)

            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
