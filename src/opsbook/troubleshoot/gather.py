"""The facts a diagnosis is made from (issue 12), gathered in parallel, each source with its own
time limit: a source that does not answer (a crashed service, no database) says so in
``sources[name].error`` and the rest still comes back.

Sources: ``platform`` (replicas, readiness, restarts, exits, versions), ``health`` (each
service's health with its dependency checks), ``signals`` (RED/USE from each service's
``/metrics``, sampled twice a second apart), ``logs`` (:mod:`opsbook.troubleshoot.logfacts`),
``changes`` (releases, runbook executions and, for people only, the sandbox's fault record),
``database`` (the ledger answers and balances), ``payment_network`` (latency, TLS days left).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from opsbook.troubleshoot.model import SERVICES, Source

if TYPE_CHECKING:
    from opsbook.db import Database
    from opsbook.workspace import Environment, Workspace

TIMEOUT = 2.8  # seconds, per source


class Context:
    """What the gatherers share: the workspace, the environment, the service URLs."""

    def __init__(self, *, workspace: Workspace, environment: Environment, db: Database | None):
        self.workspace = workspace
        self.environment = environment
        self.db = db
        self.status: dict[str, Any] | None = None
        self.urls: dict[str, str] = {}
        self.data_dir: Path | None = None
        self.network_url: str | None = None


async def _platform(cx: Context) -> dict[str, Any]:
    from opsbook.platforms import platform_for  # noqa: PLC0415

    env = cx.environment
    platform = platform_for(environment=env.data, workspace=cx.workspace.root, env_name=env.name)
    status = await platform.status()
    cx.status = status
    services = []
    for s in status.get("services", []):
        pods = s.get("pods") or []
        services.append(
            {
                "name": s.get("name"),
                "state": s.get("state"),
                "ready": s.get("ready"),
                "replicas": s.get("replicas"),
                "version": s.get("version"),
                "revision": s.get("revision"),
                "restarts": s.get("restarts"),
                "memory_mb": s.get("memory"),
                "exit_codes": [p.get("exit_code") for p in pods if p.get("exit_code") is not None],
                "versions": sorted({str(p.get("version")) for p in pods if p.get("version")}),
                "pods": [str(p.get("name")) for p in pods if p.get("name")],
            }
        )
        if s.get("url"):
            cx.urls[str(s["name"])] = str(s["url"])
    net = status.get("payment_network") or {}
    if net.get("url"):
        cx.network_url = str(net["url"])
    if status.get("data_dir"):
        cx.data_dir = Path(str(status["data_dir"]))
    if env.platform == "local":
        from opsbook.sandbox.lifecycle import load_config  # noqa: PLC0415

        cfg = load_config(workspace=cx.workspace, env_name=env.name)
        cx.data_dir = cx.data_dir or cfg.data_path
        cx.network_url = cx.network_url or f"https://127.0.0.1:{cfg.network_port}"
    return {"platform": env.platform, "services": services}


async def _health(cx: Context) -> dict[str, Any]:
    import httpx  # noqa: PLC0415

    async with httpx.AsyncClient(timeout=2.0, trust_env=False) as client:

        async def one(name: str, url: str) -> tuple[str, dict[str, Any]]:
            started = time.perf_counter()
            try:
                r = await client.get(url + "/health")
            except httpx.HTTPError as exc:
                return name, {
                    "status": "NO ANSWER",
                    "error": f"{type(exc).__name__}",
                    "http_status": None,
                }
            try:
                body = r.json()
            except ValueError:
                body = {"error": r.text[:200]}
            return name, {
                "status": body.get("status") if isinstance(body, dict) else None,
                "http_status": r.status_code,
                "error": body.get("error") if isinstance(body, dict) else None,
                "checks": body.get("checks", {}) if isinstance(body, dict) else {},
                "latency_ms": round((time.perf_counter() - started) * 1000, 1),
            }

        found = await asyncio.gather(*(one(n, u) for n, u in cx.urls.items()))
    return dict(found)


def _parse_metrics(text: str) -> dict[str, float]:
    from prometheus_client.parser import text_string_to_metric_families  # noqa: PLC0415

    out: dict[str, float] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            name = s.name
            if name.endswith(("_bucket", "_created")):
                continue
            if name == "http_requests_total":
                if str(s.labels.get("route", "")).startswith(("/health", "/metrics")):
                    continue
                name = f"http_requests_total:{str(s.labels.get('status', ''))[:1]}xx"
            elif name.startswith("http_request_duration_seconds") and str(
                s.labels.get("route", "")
            ).startswith(("/health", "/metrics")):
                continue
            out[name] = out.get(name, 0.0) + float(s.value)
    return out


async def _signals(cx: Context) -> dict[str, Any]:
    import httpx  # noqa: PLC0415

    async with httpx.AsyncClient(timeout=0.6, trust_env=False) as client:

        async def sample() -> dict[str, dict[str, float] | str]:
            async def one(name: str, url: str) -> tuple[str, dict[str, float] | str]:
                try:
                    r = await client.get(url + "/metrics")
                    return name, _parse_metrics(r.text)
                except (httpx.HTTPError, ValueError) as exc:
                    return name, f"{type(exc).__name__}"

            return dict(await asyncio.gather(*(one(n, u) for n, u in cx.urls.items())))

        first = await sample()
        t0 = time.perf_counter()
        await asyncio.sleep(1.0)
        second = await sample()
        dt = time.perf_counter() - t0
    out: dict[str, Any] = {}
    for name, b in second.items():
        a = first.get(name)
        if isinstance(b, str) or not isinstance(a, dict):
            out[name] = {"error": b if isinstance(b, str) else "no first sample"}
            continue

        def delta(key: str, a: dict[str, float] = a, b: dict[str, float] = b) -> float:
            return max(0.0, b.get(key, 0.0) - a.get(key, 0.0))

        total = sum(delta(k) for k in b if k.startswith("http_requests_total:"))
        errors = delta("http_requests_total:5xx")
        count = delta("http_request_duration_seconds_count")
        out[name] = {
            "request_rate": round(total / dt, 2),
            "error_ratio": round(errors / total, 3) if total else None,
            "mean_latency_ms": round(1000 * delta("http_request_duration_seconds_sum") / count, 1)
            if count
            else None,
            "rss_mb": round(b.get("process_resident_memory_bytes", 0.0) / 2**20, 1),
            "rss_growth_mb_s": round(
                (
                    b.get("process_resident_memory_bytes", 0.0)
                    - a.get("process_resident_memory_bytes", 0.0)
                )
                / 2**20
                / dt,
                1,
            ),
            "db_pool_in_use": b.get("db_pool_connections_in_use"),
            "db_pool_size": b.get("db_pool_size"),
            "login_failures_per_s": round(delta("auth_login_failures_total") / dt, 1),
            "tls_days_left": round(b["tls_certificate_expiry_seconds"] / 86400, 1)
            if "tls_certificate_expiry_seconds" in b
            else None,
            "disk_used_percent": round(
                100 * b.get("sandbox_disk_usage_bytes", 0.0) / b["sandbox_disk_quota_bytes"], 1
            )
            if b.get("sandbox_disk_quota_bytes")
            else None,
            "queue_depth": b.get("bank_notification_queue_depth"),
            "payments_failed": delta("bank_payments_total") if "bank_payments_total" in b else None,
        }
    return out


async def _logs(cx: Context) -> dict[str, Any]:
    from opsbook.troubleshoot.logfacts import gather_logs  # noqa: PLC0415

    if cx.data_dir is None:
        return {"error": "no log directory: the platform does not give one (not the sandbox)"}
    replicas = {
        str(s.get("name")): {str(p.get("name")) for p in s.get("pods") or [] if p.get("name")}
        for s in (cx.status or {}).get("services", [])
    }
    return await asyncio.to_thread(
        gather_logs,
        cx.data_dir / "logs",
        services=list(cx.urls) or list(SERVICES),
        replicas=replicas,
    )


def _changes_sync(cx: Context) -> list[dict[str, Any]]:
    from opsbook.sandbox.faults import read_chaos_log  # noqa: PLC0415

    now = datetime.now(UTC)
    since = now - timedelta(hours=6)
    out: list[dict[str, Any]] = []
    for s in (cx.status or {}).get("services", []):
        if int(s.get("revision") or 1) > 1:
            out.append(
                {
                    "ts": None,
                    "kind": "release",
                    "text": f"{s['name']} runs revision {s.get('revision')} ({s.get('version')})",
                    "service": s.get("name"),
                    "used_for_ranking": True,
                }
            )
    if cx.db is not None:
        rows = cx.db.query(
            "SELECT id, runbook_id, procedure_id, environment, state, started_by, created_at"
            " FROM executions WHERE created_at >= ? AND dry_run = 0 ORDER BY created_at DESC"
            " LIMIT 20",
            (since.isoformat(timespec="microseconds").replace("+00:00", "Z"),),
        )
        out += [
            {
                "ts": r["created_at"],
                "kind": "execution",
                "text": f"{r['runbook_id']}#{r['procedure_id']} on {r['environment']}:"
                f" {r['state']} (by {r['started_by']})",
                "used_for_ranking": False,
            }
            for r in rows
        ]
    if cx.data_dir is not None:  # shown to people; the rules never read it (honesty rule)
        for e in read_chaos_log(cx.data_dir)[-20:]:
            ts = datetime.fromtimestamp(float(e.get("ts") or 0), UTC)
            if ts >= since:
                out.append(
                    {
                        "ts": ts.isoformat(timespec="seconds").replace("+00:00", "Z"),
                        "kind": "sandbox-fault",
                        "text": f"{e.get('action')}: {e.get('fault')} on {e.get('target')}"
                        f" (by {e.get('actor')})",
                        "used_for_ranking": False,
                    }
                )
    return sorted(out, key=lambda x: str(x.get("ts") or "9"), reverse=True)


async def _changes(cx: Context) -> Any:
    return await asyncio.to_thread(_changes_sync, cx)


def _database_sync(cx: Context) -> dict[str, Any]:
    from opsbook.sandbox.lifecycle import load_config  # noqa: PLC0415

    if cx.environment.platform != "local":
        return {
            "applicable": False,
            "why": "the ledger of this environment is checked by its runbooks' sql steps",
        }
    url = load_config(workspace=cx.workspace, env_name=cx.environment.name).database_url
    if not url.startswith("sqlite:///"):
        return {
            "applicable": False,
            "why": f"{url.split(':', 1)[0]}: checked by the database runbook",
        }
    import sqlite3  # noqa: PLC0415

    path = url.removeprefix("sqlite:///")
    started = time.perf_counter()
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1.0)
    try:
        total = conn.execute("SELECT COALESCE(SUM(amount_cents), 0) FROM entries").fetchone()[0]
    finally:
        conn.close()
    return {
        "applicable": True,
        "answers": True,
        "latency_ms": round((time.perf_counter() - started) * 1000, 1),
        "entries_sum_cents": int(total),
        "balanced": int(total) == 0,
        "replication": "not applicable: no replica",
    }


async def _database(cx: Context) -> Any:
    return await asyncio.to_thread(_database_sync, cx)


def _tls_days(url: str) -> float | None:
    import socket  # noqa: PLC0415
    import ssl  # noqa: PLC0415
    from urllib.parse import urlsplit  # noqa: PLC0415

    from cryptography import x509  # noqa: PLC0415

    parts = urlsplit(url)
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection(
            (parts.hostname or "127.0.0.1", parts.port or 443), timeout=2
        ) as s,
        ctx.wrap_socket(s, server_hostname=parts.hostname) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    if not der:
        return None
    cert = x509.load_der_x509_certificate(der)
    return round((cert.not_valid_after_utc - datetime.now(UTC)).total_seconds() / 86400, 1)


async def _payment_network(cx: Context) -> dict[str, Any]:
    import httpx  # noqa: PLC0415

    if not cx.network_url:
        return {"applicable": False, "why": "no payment network in this environment's status"}
    started = time.perf_counter()
    try:
        async with httpx.AsyncClient(timeout=2.0, verify=False, trust_env=False) as client:  # noqa: S501 - the sandbox's own certificate; only its timing and dates are read
            r = await client.get(cx.network_url + "/health")
        answered: Any = r.status_code
    except httpx.HTTPError as exc:
        answered = f"{type(exc).__name__}"
    latency = round((time.perf_counter() - started) * 1000, 1)
    try:
        days = await asyncio.to_thread(_tls_days, cx.network_url)
    except (OSError, ValueError) as exc:
        days = None
        answered = f"{answered}; TLS: {type(exc).__name__}"
    return {"url": cx.network_url, "answer": answered, "latency_ms": latency, "tls_days_left": days}


GATHERERS: dict[str, Callable[[Context], Awaitable[Any]]] = {
    "health": _health,
    "signals": _signals,
    "logs": _logs,
    "changes": _changes,
    "database": _database,
    "payment_network": _payment_network,
}


async def _timed(
    name: str, fn: Callable[[Context], Awaitable[Any]], cx: Context, limit: float
) -> tuple[str, Any, Source]:
    started = time.perf_counter()
    try:
        value = await asyncio.wait_for(fn(cx), timeout=limit)
    except TimeoutError:
        return (
            name,
            None,
            Source(False, (time.perf_counter() - started) * 1000, f"no answer within {limit:g}s"),
        )
    except Exception as exc:
        return (
            name,
            None,
            Source(
                False, (time.perf_counter() - started) * 1000, f"{type(exc).__name__}: {exc}"[:300]
            ),
        )
    return name, value, Source(True, (time.perf_counter() - started) * 1000)


async def gather_all(
    cx: Context, *, limit: float = TIMEOUT, sequential: bool = False
) -> tuple[dict[str, Any], dict[str, Source]]:
    """Every source's facts and how each went. The platform comes first (it names the service
    URLs the others read), then the rest in parallel (one after the other with ``sequential``:
    the benchmark's baseline)."""
    facts: dict[str, Any] = {}
    sources: dict[str, Source] = {}
    name, value, src = await _timed("platform", _platform, cx, limit)
    facts[name], sources[name] = value, src
    if not cx.urls:
        from opsbook.platforms.base import health_targets  # noqa: PLC0415

        cx.urls = {
            n: u.removesuffix("/health")
            for n, u in health_targets(cx.environment.data, service=None, urls=None)
        }
    if sequential:
        done = [await _timed(n, fn, cx, limit) for n, fn in GATHERERS.items()]
    else:
        done = list(
            await asyncio.gather(*(_timed(n, fn, cx, limit) for n, fn in GATHERERS.items()))
        )
    for name, value, src in done:
        facts[name], sources[name] = value, src
    return facts, sources
