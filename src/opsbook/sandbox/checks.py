"""Health checks and scrape-time gauges of a sandbox service (``/health``, ``/metrics``).

``status`` is ``UP`` (HTTP 200), ``DEGRADED`` or ``DOWN`` (HTTP 503): DOWN when the service cannot
do its job (database or disk), DEGRADED when something it needs is unwell (a dependency, memory,
a failed self-test). An expiring certificate is a warning, not an outage: health stays UP.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

from opsbook.sandbox import tls
from opsbook.sandbox.ledger import LedgerUnavailable
from opsbook.sandbox.runtime import MEMORY_WARN_BYTES, Runtime

TLS_WARN_DAYS = 14
NETWORK_TIMEOUT = 2.0


def network_client(rt: Runtime) -> httpx.AsyncClient:
    """The payment network client, rebuilt when the sandbox certificate is re-issued."""
    crt = tls.trust_path(rt.settings.data_dir)
    try:
        mtime: object = (crt.name, crt.stat().st_mtime)
    except FileNotFoundError:
        mtime = 0.0
    client: httpx.AsyncClient | None = rt.extra.get("network")
    if client is None or rt.extra.get("network_mtime") != mtime:
        if client is not None:
            rt.extra.setdefault("old_clients", []).append(client)
        client = httpx.AsyncClient(
            base_url=f"https://127.0.0.1:{rt.settings.network_port}",
            verify=tls.client_context(crt),
            timeout=NETWORK_TIMEOUT,
            limits=httpx.Limits(max_connections=50, max_keepalive_connections=20),
        )
        rt.extra["network"], rt.extra["network_mtime"] = client, mtime
    return client


async def _database(rt: Runtime) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        await rt.db(rt.ledger.ping, timeout=1.0)
    except LedgerUnavailable as exc:
        return {"status": "DOWN", "error": str(exc)}
    return {
        "status": "UP",
        "latency_ms": round((time.perf_counter() - started) * 1000, 1),
        "pool": {"size": rt.pool.size, "in_use": rt.pool.in_use},
    }


async def _schema(rt: Runtime) -> dict[str, Any]:
    """A release that needs a schema change cannot work without it: DOWN, naming the column."""
    cached = rt.extra.get("schema")
    if cached is not None:
        return dict(cached)
    try:
        missing = [
            f"{t}.{c}"
            for t, c in rt.settings.requires
            if not await rt.db(rt.ledger.has_column, t, c, timeout=1.0)
        ]
    except LedgerUnavailable as exc:
        return {"status": "UNKNOWN", "error": str(exc)}
    if missing:
        return {
            "status": "DOWN",
            "missing": missing,
            "error": f"release {rt.settings.version} needs {', '.join(missing)}: apply the "
            "migration first (runbook deployment-procedures#database-migration)",
        }
    rt.extra["schema"] = {"status": "UP"}  # a column once there stays: stop asking
    return {"status": "UP"}


async def _dependencies(rt: Runtime) -> dict[str, Any]:
    if rt.settings.service != "payment":
        return {"status": "UP"}
    started = time.perf_counter()
    try:
        reply = await network_client(rt).get("/health", timeout=1.0)
        state = "UP" if reply.status_code == 200 else "DOWN"
        detail: dict[str, Any] = {"status": state, "http_status": reply.status_code}
    except httpx.TimeoutException:
        detail = {"status": "DOWN", "error": "timed out after 1.0s"}
    except httpx.HTTPError as exc:
        detail = {"status": "DOWN", "error": f"{type(exc).__name__}: {exc}"}
    detail["latency_ms"] = round((time.perf_counter() - started) * 1000, 1)
    return {"status": "UP" if detail["status"] == "UP" else "DEGRADED", "payment_network": detail}


async def tls_days_left(rt: Runtime) -> float | None:
    """Days until the payment network's certificate expires (from the handshake), cached 1 s."""
    cached = rt.extra.get("tls")
    if cached and time.monotonic() - cached[0] < 1.0:
        return float(cached[1])
    crt = tls.trust_path(rt.settings.data_dir)
    try:
        not_after = await asyncio.to_thread(tls.probe_expiry, rt.settings.network_port, crt)
    except (OSError, ValueError):
        return None
    days = (not_after - time.time()) / 86400
    rt.extra["tls"] = (time.monotonic(), days)
    rt.metrics.tls_expiry.set(days * 86400)
    return days


async def _tls(rt: Runtime) -> dict[str, Any]:
    days = await tls_days_left(rt)
    if days is None:
        return {"status": "UNKNOWN", "error": "no TLS handshake with the payment network"}
    status = "DOWN" if days <= 0 else "WARN" if days < TLS_WARN_DAYS else "UP"
    if status != "UP" and time.monotonic() - rt.extra.get("tls_warned", 0.0) > 30:
        rt.extra["tls_warned"] = time.monotonic()
        rt.log(
            "warning",
            "TLS certificate expires soon",
            days_left=round(days, 2),
            certificate="payment-network.sandbox",
        )
    return {"status": status, "days_left": round(days, 2)}


async def health(rt: Runtime) -> dict[str, Any]:
    rt.health_probes += 1
    s = rt.settings
    found: dict[str, Any] = {
        "database": await _database(rt),
        "dependencies": await _dependencies(rt),
    }
    used, quota = rt.disk_usage(), s.disk_quota_bytes
    pct = round(100 * used / quota, 1) if quota else 0.0
    found["disk"] = {
        "status": "DOWN" if used >= quota else "WARN" if pct >= 90 else "UP",
        "used_bytes": used,
        "quota_bytes": quota,
        "used_percent": pct,
    }
    rss = rt.rss()
    found["memory"] = {
        "status": "WARN" if rss > MEMORY_WARN_BYTES else "UP",
        "rss_mb": rss // 2**20,
        "limit_mb": 512,
    }
    if s.service == "payment":
        found["tls"] = await _tls(rt)
    if s.requires:
        found["schema"] = await _schema(rt)
    if s.bug and rt.health_probes % 3 == 0:
        found["self_test"] = {
            "status": "DOWN",
            "error": "KeyError: 'currency_rules' in the transfer self-test",
        }
    if any(found[k]["status"] == "DOWN" for k in ("database", "disk", "schema") if k in found):
        status = "DOWN"
    elif (
        found["dependencies"]["status"] != "UP"
        or found["memory"]["status"] != "UP"
        or "self_test" in found
    ):
        status = "DEGRADED"
    else:
        status = "UP"
    if status != "UP":
        bad = sorted(k for k, v in found.items() if v.get("status") not in ("UP", "WARN"))
        rt.log("warning", "health check failed", status=status, failing=bad)
    return {
        "status": status,
        "service": s.service,
        "version": s.version,
        "replica": s.replica,
        "checks": found,
    }


async def refresh_gauges(rt: Runtime) -> None:
    """Business gauges read at scrape time (bounded: a sick database must not hang /metrics)."""
    rt.disk_usage()
    service = rt.settings.service
    try:
        if service == "transaction":
            report = await rt.db(rt.ledger.check, timeout=0.5)
            rt.metrics.ledger_ok.set(1 if report.ok else 0)
            rt.metrics.ledger_total.set(report.total_cents)
        elif service == "notification":
            rt.metrics.queue.set(await rt.db(rt.ledger.outbox_depth, timeout=0.5))
        elif service == "payment":
            await tls_days_left(rt)
    except LedgerUnavailable:
        pass  # the db_errors counter already says why
