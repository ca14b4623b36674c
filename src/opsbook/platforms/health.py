"""Health fan-out: probe many HTTP health endpoints at once (bounded concurrency).

The seed's "check service health" is a sequential ``curl`` loop; this asks every endpoint at the
same time, so N endpoints answering in T each take about T, not N x T.

Each probe is one ``GET`` with ``Connection: close`` on a plain asyncio connection (TLS with the
system trust store for https). httpx's connection pool costs ~20 ms of CPU per request once
hundreds are in flight (encode/httpx#3215), which alone would blow the 1.5 s budget for 500
endpoints; httpx is still used when a proxy is configured in the environment, since the plain
client does not speak to proxies.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

DEFAULT_CONCURRENCY = 500
DEFAULT_TIMEOUT = 5.0
MAX_BODY = 1 << 20
_PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")


@dataclass(frozen=True)
class Target:
    name: str
    url: str


def _status(code: int, body: Any) -> str:
    claimed = body.get("status") if isinstance(body, dict) else None
    if isinstance(claimed, str) and claimed:
        claimed = claimed.upper()
        return "DOWN" if code >= 500 and claimed == "UP" else claimed
    return "UP" if 200 <= code < 400 else "DOWN"


_tls: ssl.SSLContext | None = None


def _tls_context() -> ssl.SSLContext:
    global _tls  # noqa: PLW0603 - one context per process: loading the CA store is slow
    if _tls is None:
        _tls = ssl.create_default_context()
    return _tls


async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
    if "chunked" in headers.get("transfer-encoding", "").lower():
        out = b""
        while len(out) <= MAX_BODY:
            size = int((await reader.readline()).split(b";")[0].strip() or b"0", 16)
            if size == 0:
                break
            out += await reader.readexactly(size)
            await reader.readline()
        return out
    if "content-length" in headers:
        return await reader.readexactly(min(int(headers["content-length"]), MAX_BODY))
    return await reader.read(MAX_BODY)


async def http_get(url: str) -> tuple[int, bytes]:
    """One GET; (status, body). Raises OSError, ssl.SSLError, ValueError."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {url}")
    https = parts.scheme == "https"
    port = parts.port or (443 if https else 80)
    reader, writer = await asyncio.open_connection(
        parts.hostname,
        port,
        ssl=_tls_context() if https else None,
        server_hostname=parts.hostname if https else None,
    )
    try:
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        writer.write(
            f"GET {target} HTTP/1.1\r\nHost: {parts.netloc}\r\nAccept: application/json\r\n"
            "User-Agent: opsbook-health\r\nConnection: close\r\n\r\n".encode()
        )
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status_line = lines[0].split(" ", 2)
        if len(status_line) < 2 or not status_line[1].isdigit():
            raise ValueError(f"not an HTTP answer: {lines[0][:80]!r}")
        headers = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        return int(status_line[1]), await _read_body(reader, headers)
    finally:
        writer.close()


def _describe(exc: BaseException, url: str, timeout: float) -> str:
    if isinstance(exc, TimeoutError):
        return f"timed out after {timeout:g}s"
    if isinstance(exc, ConnectionRefusedError):
        return f"connection refused to {url}"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve the host of {url}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS error with {url}: {exc.reason or exc}"
    if isinstance(exc, asyncio.IncompleteReadError):
        return f"{url} closed the connection before answering"
    return f"request to {url} failed: {type(exc).__name__}: {exc}"


async def _probe(target: Target, timeout: float) -> dict[str, Any]:
    started = time.perf_counter()
    out: dict[str, Any] = {"name": target.name, "url": target.url}
    try:
        code, raw = await asyncio.wait_for(http_get(target.url), timeout)
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = None
        out.update(status=_status(code, body), http_status=code)
        if isinstance(body, dict) and isinstance(body.get("checks"), dict):
            out["checks"] = {
                k: v.get("status") if isinstance(v, dict) else v for k, v in body["checks"].items()
            }
    except (
        OSError,
        ssl.SSLError,
        ValueError,
        TimeoutError,
        asyncio.IncompleteReadError,
        asyncio.LimitOverrunError,
    ) as exc:
        out.update(status="DOWN", http_status=None, error=_describe(exc, target.url, timeout))
    out["latency_ms"] = round((time.perf_counter() - started) * 1000, 1)
    return out


async def _probe_httpx(
    targets: Sequence[Target], timeout: float, gate: asyncio.Semaphore
) -> list[dict[str, Any]]:
    import httpx  # noqa: PLC0415 - only behind a proxy

    async with httpx.AsyncClient(timeout=timeout, trust_env=True) as client:

        async def one(target: Target) -> dict[str, Any]:
            async with gate:
                started = time.perf_counter()
                out: dict[str, Any] = {"name": target.name, "url": target.url}
                try:
                    reply = await client.get(target.url, headers={"Accept": "application/json"})
                    try:
                        body: Any = reply.json()
                    except ValueError:
                        body = None
                    out.update(
                        status=_status(reply.status_code, body), http_status=reply.status_code
                    )
                except httpx.HTTPError as exc:
                    out.update(
                        status="DOWN", http_status=None, error=f"{type(exc).__name__}: {exc}"
                    )
                out["latency_ms"] = round((time.perf_counter() - started) * 1000, 1)
                return out

        return list(await asyncio.gather(*(one(t) for t in targets)))


async def probe_all(
    targets: Sequence[Target],
    *,
    timeout: float = DEFAULT_TIMEOUT,
    concurrency: int = DEFAULT_CONCURRENCY,
) -> list[dict[str, Any]]:
    """GET every target's URL, ``concurrency`` at a time; one result per target, in order."""
    gate = asyncio.Semaphore(max(1, min(concurrency, 2000)))
    if any(os.environ.get(v) for v in _PROXY_VARS):
        return await _probe_httpx(targets, timeout, gate)

    async def one(target: Target) -> dict[str, Any]:
        async with gate:
            return await _probe(target, timeout)

    return list(await asyncio.gather(*(one(t) for t in targets)))


def summary(results: list[dict[str, Any]], started: float) -> dict[str, Any]:
    return {
        "healthy": bool(results) and all(r["status"] == "UP" for r in results),
        "checked": len(results),
        "up": sum(1 for r in results if r["status"] == "UP"),
        "elapsed_ms": round((time.perf_counter() - started) * 1000, 1),
        "services": results,
    }
