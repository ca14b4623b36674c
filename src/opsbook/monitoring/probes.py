"""Running one probe: HTTP (status, JSON, latency), TCP connect, TLS certificate expiry, SQL
query, PromQL query. The result's fields are the CEL variables of the probe's ``expect``
conditions, named as in runbook steps (``status``, ``json``, ``duration``, ``rows`` …)."""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from opsbook.monitoring.config import MonitoringConfig, Probe

DEFAULT_EXPECT = {
    "http": ("status >= 200 && status < 400",),
    "tcp": ("connected",),
    "tls": ("days_left > 14",),
    "sql": ("row_count >= 0",),
    "promql": ("value != null",),
}


@dataclass(frozen=True)
class ProbeResult:
    probe: str
    service: str
    kind: str
    ok: bool
    latency_ms: int
    ts: int  # epoch seconds when the check started
    detail: str = ""  # why it failed
    fields: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "probe": self.probe,
            "service": self.service,
            "kind": self.kind,
            "ok": self.ok,
            "latency_ms": self.latency_ms,
            "ts": self.ts,
            "detail": self.detail,
        }


async def _http(probe: Probe, client: Any) -> dict[str, Any]:
    t = probe.target
    reply = await client.request(
        str(t.get("method", "GET")),
        str(t["url"]),
        headers=dict(t.get("headers") or {}),
        timeout=probe.timeout,
    )
    body = reply.text
    try:
        parsed: Any = json.loads(body) if body else None
    except ValueError:
        parsed = None
    return {
        "status": reply.status_code,
        "body": body[:65536],
        "json": parsed,
        "headers": dict(reply.headers),
    }


async def _tcp(probe: Probe) -> dict[str, Any]:
    host, port = str(probe.target["host"]), int(probe.target["port"])
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), probe.timeout)
    except (OSError, TimeoutError) as exc:
        return {"connected": False, "error": type(exc).__name__}
    writer.close()
    await asyncio.gather(writer.wait_closed(), return_exceptions=True)
    return {"connected": True}


def tls_context(target: Mapping[str, Any], root: Path) -> ssl.SSLContext:
    """Verifying context; ``ca_file`` (relative to the workspace) is trusted in addition."""
    context = ssl.create_default_context()
    if target.get("ca_file"):
        context.load_verify_locations(cafile=str(root / str(target["ca_file"])))
    if target.get("verify", True) is False:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


async def _tls(probe: Probe, root: Path) -> dict[str, Any]:
    """Handshake and read the peer certificate's expiry (``days_left``)."""
    host, port = str(probe.target["host"]), int(probe.target["port"])
    context = tls_context(probe.target, root)
    server_name = str(probe.target.get("server_name", host))
    _, writer = await asyncio.wait_for(
        asyncio.open_connection(host, port, ssl=context, server_hostname=server_name),
        probe.timeout,
    )
    try:
        obj = writer.get_extra_info("ssl_object")
        decoded = obj.getpeercert() if obj else None
        der = obj.getpeercert(binary_form=True) if obj else None
    finally:
        writer.close()
        await asyncio.gather(writer.wait_closed(), return_exceptions=True)
    if decoded and decoded.get("notAfter"):
        not_after = datetime.fromtimestamp(ssl.cert_time_to_seconds(str(decoded["notAfter"])), UTC)
    elif der:
        not_after = _cert_not_after(der)
    else:
        return {"connected": True, "days_left": -1, "not_after": None}
    days = (not_after - datetime.now(UTC)).total_seconds() / 86400
    return {"connected": True, "days_left": round(days, 2), "not_after": not_after.isoformat()}


def _cert_not_after(der: bytes) -> datetime:
    """Unverified certificates (``verify: false``) are decoded with ``cryptography``."""
    from cryptography import x509  # noqa: PLC0415 - only unverified TLS probes need it

    cert = x509.load_der_x509_certificate(der)
    return cert.not_valid_after_utc


def _sql_sync(url: str, query: str, timeout: float) -> dict[str, Any]:
    from sqlalchemy import create_engine, text  # noqa: PLC0415

    engine = create_engine(
        url, connect_args={"timeout": timeout} if url.startswith("sqlite") else {}
    )
    try:
        with engine.connect() as conn:
            result = conn.execute(text(query))
            rows = [dict(r._mapping) for r in result.fetchmany(100)]
    finally:
        engine.dispose()
    return {"rows": json.loads(json.dumps(rows, default=str)), "row_count": len(rows)}


def sql_url(config: MonitoringConfig, db: str, root: Path) -> str:
    entry = config.databases.get(db)
    url = entry.get("url") if isinstance(entry, dict) else entry
    if not url:
        from opsbook.errors import ValidationError  # noqa: PLC0415

        raise ValidationError(
            f"database {db!r} has no url in {config.path.name}",
            hint=f"set databases.{db}.url",
        )
    url = str(url)
    if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
        url = f"sqlite:///{root / url[len('sqlite:///') :]}"
    return url


async def _promql(probe: Probe, config: MonitoringConfig, client: Any) -> dict[str, Any]:
    from opsbook.engine.runners.promql import read_result  # noqa: PLC0415

    if not config.prometheus:
        raise RuntimeError("monitoring.prometheus is not set for this environment")
    reply = await client.get(
        config.prometheus.rstrip("/") + "/api/v1/query",
        params={"query": str(probe.target["query"])},
        timeout=probe.timeout,
    )
    data = reply.json()
    if data.get("status") != "success":
        raise RuntimeError(f"Prometheus: {data.get('error', reply.status_code)}")
    value, series = read_result(data.get("data") or {})
    return {"value": value, "series": series}


async def run_probe(
    probe: Probe, *, config: MonitoringConfig, client: Any, root: Path
) -> ProbeResult:
    """Run ``probe`` once; never raises for a failing target (the failure is the result)."""
    from opsbook.errors import OpsbookError  # noqa: PLC0415
    from opsbook.expressions import evaluate  # noqa: PLC0415

    started_wall = int(time.time())
    started = time.perf_counter()
    try:
        if probe.kind == "http":
            fields = await _http(probe, client)
        elif probe.kind == "tcp":
            fields = await _tcp(probe)
        elif probe.kind == "tls":
            fields = await _tls(probe, root)
        elif probe.kind == "sql":
            url = sql_url(config, str(probe.target["db"]), root)
            fields = await asyncio.wait_for(
                asyncio.to_thread(_sql_sync, url, str(probe.target["query"]), probe.timeout),
                probe.timeout + 1,
            )
        else:
            fields = await _promql(probe, config, client)
    except (Exception, TimeoutError) as exc:
        elapsed = time.perf_counter() - started
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return ProbeResult(
            probe.name,
            probe.service,
            probe.kind,
            False,
            round(elapsed * 1000),
            started_wall,
            detail=f"{type(exc).__name__}: {text}"[:300],
        )
    elapsed = time.perf_counter() - started
    fields["duration"] = elapsed
    failed = ""
    for expr in probe.expect or DEFAULT_EXPECT[probe.kind]:
        why = ""
        try:
            ok = evaluate(expr, fields) is True
        except OpsbookError as exc:
            ok, why = False, f" ({exc.message})"
        if not ok:
            failed = f"expected {expr}{why}"
            break
    return ProbeResult(
        probe.name,
        probe.service,
        probe.kind,
        not failed,
        round(elapsed * 1000),
        started_wall,
        detail=failed[:300],
        fields={k: v for k, v in fields.items() if k not in ("body", "headers")},
    )


async def run_all(
    config: MonitoringConfig, *, root: Path, concurrency: int = 16
) -> list[ProbeResult]:
    """Run every probe of ``config`` once (bounded concurrency), in definition order."""
    import httpx  # noqa: PLC0415

    gate = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(follow_redirects=False) as client:

        async def one(p: Probe) -> ProbeResult:
            async with gate:
                return await run_probe(p, config=config, client=client, root=root)

        return list(await asyncio.gather(*(one(p) for p in config.probes)))
