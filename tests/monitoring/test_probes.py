"""Probes against real servers on 127.0.0.1: HTTP status/JSON/latency, TCP, TLS expiry,
SQL and PromQL; a failing target is a result, never an exception."""

from __future__ import annotations

import asyncio
import socket
import sqlite3
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from opsbook.monitoring.config import load_monitoring
from opsbook.monitoring.probes import ProbeResult, run_all
from opsbook.sandbox.tls import cert_paths, issue_certificate
from tests.conftest import free_port
from tests.monitoring.conftest import Site, make_ws


def run(tmp_path: Path, env: str) -> dict[str, ProbeResult]:
    ws = make_ws(tmp_path, env)
    config = load_monitoring(ws, "sandbox")
    return {r.probe: r for r in asyncio.run(run_all(config, root=ws.root))}


def test_http_probe_status_json_and_latency(tmp_path: Path, site: Site) -> None:
    env = f"""\
name: sandbox
services:
  - name: payment
    health_url: {site.url}/health
    probes:
      - name: up
        http: {{url: "${{service.health_url}}"}}
        expect: ['status == 200', 'json.status == "UP"', 'duration < 5']
      - name: plain
        http: {{url: "{site.url}/"}}
"""
    results = run(tmp_path, env)
    assert results["up"].ok and results["plain"].ok
    assert results["up"].fields["json"] == {"status": "UP"}
    site.body = {"status": "DOWN"}
    results = run(tmp_path, env)
    assert not results["up"].ok
    assert results["up"].detail == 'expected json.status == "UP"'
    site.status = 503
    results = run(tmp_path, env)
    assert results["plain"].detail == "expected status >= 200 && status < 400"


def test_unreachable_targets_fail_with_a_reason(tmp_path: Path) -> None:
    port = free_port()
    env = f"""\
name: sandbox
services:
  - name: payment
    probes:
      - {{name: http, http: {{url: "http://127.0.0.1:{port}/health"}}, timeout: 1s}}
      - {{name: tcp, tcp: {{host: 127.0.0.1, port: {port}}}, timeout: 1s}}
      - {{name: broken-field, http: {{url: "http://127.0.0.1:{port}/"}}}}
"""
    results = run(tmp_path, env)
    assert not results["http"].ok and "ConnectError" in results["http"].detail
    assert not results["tcp"].ok and results["tcp"].detail == "expected connected"


def test_tcp_probe(tmp_path: Path) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        env = f"""\
name: sandbox
services:
  - name: payment
    probes:
      - {{name: tcp, tcp: "127.0.0.1:{port}", expect: ['connected', 'duration < 5']}}
"""
        assert run(tmp_path, env)["tcp"].ok


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    data = tmp_path / "tlsdata"
    issue_certificate(data, days=10)
    cert, key = cert_paths(data)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(cert), str(key))
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            try:
                with context.wrap_socket(conn, server_side=True):
                    pass
            except (ssl.SSLError, OSError):
                conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield port, cert
    stop.set()
    thread.join(5)
    server.close()


def test_tls_probe_reads_certificate_expiry(tmp_path: Path, tls_server: tuple[int, Path]) -> None:
    port, cert = tls_server
    env = f"""\
name: sandbox
services:
  - name: payment
    probes:
      - name: cert-ok
        tls: {{host: 127.0.0.1, port: {port}, ca_file: "{cert}"}}
        expect: ['days_left > 5']
      - name: cert-soon
        tls: {{host: 127.0.0.1, port: {port}, ca_file: "{cert}"}}
        expect: ['days_left > 14']
      - name: untrusted
        tls: {{host: 127.0.0.1, port: {port}}}
      - name: unverified
        tls: {{host: 127.0.0.1, port: {port}, verify: false}}
        expect: ['days_left > 5']
"""
    results = run(tmp_path, env)
    assert results["cert-ok"].ok
    assert 9 < results["cert-ok"].fields["days_left"] <= 10
    assert not results["cert-soon"].ok and results["cert-soon"].detail == "expected days_left > 14"
    assert not results["untrusted"].ok and "SSL" in results["untrusted"].detail
    assert results["unverified"].ok


def test_sql_probe(tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.db"
    with sqlite3.connect(ledger) as conn:
        conn.execute("CREATE TABLE entries (amount_cents INTEGER)")
        conn.executemany("INSERT INTO entries VALUES (?)", [(500,), (-500,)])
    env = """\
name: sandbox
databases: {ledger: {url: "sqlite:///ledger.db"}}
services:
  - name: transaction
    probes:
      - name: ledger
        sql: {db: ledger, query: "SELECT COALESCE(SUM(amount_cents), 0) AS total FROM entries"}
        expect: ['rows[0].total == 0']
      - name: missing-table
        sql: {db: ledger, query: "SELECT * FROM nope"}
"""
    results = run(tmp_path, env)
    assert results["ledger"].ok
    assert not results["missing-table"].ok and "nope" in results["missing-table"].detail
    with sqlite3.connect(ledger) as conn:
        conn.execute("INSERT INTO entries VALUES (1)")
    assert run(tmp_path, env)["ledger"].detail == "expected rows[0].total == 0"


def test_promql_probe(tmp_path: Path, site: Site) -> None:
    site.body = {
        "status": "success",
        "data": {"resultType": "vector", "result": [{"metric": {}, "value": [1, "0.004"]}]},
    }
    env = f"""\
name: sandbox
monitoring: {{prometheus: "{site.url}"}}
services:
  - name: payment
    probes:
      - name: errors
        promql: {{query: 'sum(rate(http_requests_total{{status=~"5.."}}[5m]))'}}
        expect: ['value < 0.01']
"""
    assert run(tmp_path, env)["errors"].ok
    site.body = {"status": "error", "error": "parse error"}
    bad = run(tmp_path, env)["errors"]
    assert not bad.ok and "parse error" in bad.detail
