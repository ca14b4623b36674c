"""Health fan-out against real HTTP servers on 127.0.0.1: concurrency, and every way an
endpoint can answer (or not)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from opsbook.platforms.health import Target, probe_all, summary

SLOW = 0.5


async def _handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        await _answer(reader, writer)
    finally:
        writer.close()


async def _answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    head = await reader.readuntil(b"\r\n\r\n")
    path = head.split(b" ", 2)[1].decode()
    if path.startswith("/slow"):
        await asyncio.sleep(SLOW)
        body, status, extra = b'{"status": "UP"}', "200 OK", ""
    elif path == "/down":
        body, status, extra = b'{"status": "DOWN"}', "503 Service Unavailable", ""
    elif path == "/degraded":
        body, status, extra = b'{"status": "DEGRADED"}', "503 Service Unavailable", ""
    elif path == "/liar":
        body, status, extra = b'{"status": "UP"}', "500 Internal Server Error", ""
    elif path == "/text":
        body, status, extra = b"OK", "200 OK", ""
    elif path == "/hang":
        await asyncio.sleep(30)
        return
    else:  # a chunked JSON answer, as Spring's actuator may send
        writer.write(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
            b"Content-Type: application/json\r\n\r\n"
            b'7\r\n{"statu\r\n9\r\ns": "UP"}\r\n0\r\n\r\n'
        )
        await writer.drain()
        writer.close()
        return
    writer.write(
        f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\n{extra}"
        "Connection: close\r\n\r\n".encode()
        + body
    )
    await writer.drain()
    writer.close()


@pytest.fixture
async def server() -> AsyncIterator[str]:
    srv = await asyncio.start_server(_handle, "127.0.0.1", 0, backlog=1024)
    port = srv.sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    srv.close()
    await srv.wait_closed()


async def test_many_slow_endpoints_are_probed_at_once(server: str) -> None:
    targets = [Target(f"svc-{i}", f"{server}/slow/{i}") for i in range(200)]
    started = time.perf_counter()
    results = await probe_all(targets, timeout=10)
    elapsed = time.perf_counter() - started
    assert [r["name"] for r in results] == [t.name for t in targets]
    assert all(r["status"] == "UP" and r["http_status"] == 200 for r in results)
    assert elapsed < 200 * SLOW / 4  # sequential would take 100 s; generous bound
    report = summary(results, started)
    assert report["healthy"] and report["checked"] == report["up"] == 200


async def test_every_kind_of_answer(server: str) -> None:
    closed = f"http://127.0.0.1:{_closed_port()}/health"
    targets = [
        Target(n, f"{server}/{n}") for n in ("down", "degraded", "liar", "text", "chunked", "hang")
    ]
    results = {
        r["name"]: r for r in await probe_all([*targets, Target("gone", closed)], timeout=0.5)
    }
    assert (results["down"]["status"], results["down"]["http_status"]) == ("DOWN", 503)
    assert results["degraded"]["status"] == "DEGRADED"
    assert results["liar"]["status"] == "DOWN"  # a 500 is never UP, whatever the body says
    assert results["text"]["status"] == "UP"
    assert results["chunked"]["status"] == "UP"
    assert results["hang"]["status"] == "DOWN" and "timed out" in results["hang"]["error"]
    assert results["gone"]["http_status"] is None
    assert "connection refused" in results["gone"]["error"]
    assert not summary(list(results.values()), time.perf_counter())["healthy"]


async def test_concurrency_is_bounded(server: str) -> None:
    targets = [Target(f"s{i}", f"{server}/slow/{i}") for i in range(4)]
    started = time.perf_counter()
    await probe_all(targets, concurrency=2, timeout=5)
    assert time.perf_counter() - started >= 2 * SLOW * 0.9  # two waves


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
