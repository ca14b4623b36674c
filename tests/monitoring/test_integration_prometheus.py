"""Real Prometheus and Alertmanager (Debian packages `prometheus`, `prometheus-alertmanager`)
on loopback: Alertmanager fires into opsbook's webhook (firing, then resolved), and a PromQL
probe queries a Prometheus that scrapes a real exporter. Skipped when the binaries are absent."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry, Gauge, start_http_server

from opsbook.monitoring.config import load_monitoring
from opsbook.monitoring.probes import run_all
from tests.api.harness import Served, serve
from tests.conftest import free_port
from tests.monitoring.conftest import make_ws
from tests.monitoring.test_config import SLOTH

pytestmark = pytest.mark.slow

ALERTMANAGER = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
PROMETHEUS = shutil.which("prometheus")


def start(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=out)


def wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"{url}: exited {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} not ready")


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with serve(Path(tmp_path_factory.mktemp("am-server")) / "ws") as s:
        yield s


def until(check: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"not within {timeout}s")


@pytest.mark.skipif(ALERTMANAGER is None, reason="prometheus-alertmanager is not installed")
def test_alertmanager_fires_into_the_webhook(served: Served, tmp_path: Path) -> None:
    served.account("am", ["operator"])
    token = served.token("am", scopes=["alerts"])
    port = free_port()
    config = tmp_path / "alertmanager.yml"
    config.write_text(
        f"""
route:
  receiver: opsbook
  group_by: [alertname]
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: opsbook
    webhook_configs:
      - url: {served.url}/api/v1/alerts/alertmanager
        send_resolved: true
        http_config:
          authorization: {{credentials: "{token}"}}
""",
        encoding="utf-8",
    )
    assert ALERTMANAGER
    log = tmp_path / "alertmanager.log"
    proc = start(
        [
            ALERTMANAGER,
            f"--config.file={config}",
            f"--storage.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
        ],
        log,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_ready(base + "/-/ready", proc, log)
        now = datetime.now(UTC)
        alert = {
            "labels": {"alertname": "PaymentDown", "service": "payment", "severity": "critical"},
            "annotations": {
                "summary": "payment is down",
                "runbook_url": "troubleshooting#service-connectivity",
            },
            "startsAt": now.isoformat(),
            "endsAt": (now + timedelta(hours=1)).isoformat(),
        }
        assert httpx.post(base + "/api/v2/alerts", json=[alert]).status_code == 200
        row = until(
            lambda: served.db.one("SELECT * FROM mon_alerts WHERE alertname = 'PaymentDown'"), 20
        )
        assert row["status"] == "firing" and row["source"] == "alertmanager"
        assert row["runbook"] == "troubleshooting#service-connectivity"
        assert len(row["fingerprint"]) == 16  # Alertmanager's own fingerprint
        alert["endsAt"] = datetime.now(UTC).isoformat()
        assert httpx.post(base + "/api/v2/alerts", json=[alert]).status_code == 200
        until(
            lambda: served.db.one(
                "SELECT id FROM mon_alerts WHERE alertname = 'PaymentDown' AND status = 'resolved'"
            ),
            20,
        )
        events = served.audit_actions(action="alerts.ingested", actor="am")
        assert events
    finally:
        stop(proc)


@contextlib.contextmanager
def prometheus_scraping(tmp_path: Path, registry: CollectorRegistry, job: str) -> Iterator[str]:
    """A real Prometheus (Debian package) scraping ``registry`` every second, exported on a
    real HTTP port; yields Prometheus' base URL."""
    exporter_port = free_port()
    server, thread = start_http_server(exporter_port, addr="127.0.0.1", registry=registry)
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        f"""
global: {{scrape_interval: 1s, evaluation_interval: 1s}}
scrape_configs:
  - job_name: {job}
    static_configs: [{{targets: ["127.0.0.1:{exporter_port}"]}}]
""",
        encoding="utf-8",
    )
    assert PROMETHEUS
    log = tmp_path / "prometheus.log"
    proc = start(
        [
            PROMETHEUS,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        log,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_ready(base + "/-/ready", proc, log)
        yield base
    finally:
        stop(proc)
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.mark.skipif(PROMETHEUS is None, reason="prometheus is not installed")
def test_promql_probe_against_real_prometheus(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    depth = Gauge("bank_notification_queue_depth", "", registry=registry)
    depth.set(3)
    with prometheus_scraping(tmp_path, registry, "notification") as base:
        ws = make_ws(
            tmp_path / "ws",
            f"""\
name: sandbox
monitoring: {{prometheus: "{base}"}}
services:
  - name: notification
    probes:
      - name: queue
        promql: {{query: 'max(bank_notification_queue_depth{{job="notification"}})'}}
        expect: ['value < 10']
""",
        )
        config_m = load_monitoring(ws, "sandbox")

        def probe() -> Any:
            (result,) = asyncio.run(run_all(config_m, root=ws.root))
            return result if result.ok else None

        result = until(probe, 30)
        assert result.fields["value"] == 3
        depth.set(50)
        until(lambda: not asyncio.run(run_all(config_m, root=ws.root))[0].ok, 30)


@pytest.mark.skipif(PROMETHEUS is None, reason="prometheus is not installed")
def test_sloth_slo_is_evaluated_by_real_prometheus(tmp_path: Path) -> None:
    import threading

    from prometheus_client import Counter

    from opsbook.monitoring import slo_prometheus
    from opsbook.monitoring.service import slo_statuses

    registry = CollectorRegistry()
    requests = Counter("http_requests", "", ["service", "status"], registry=registry)
    stop_traffic = threading.Event()

    def traffic() -> None:  # 100 requests every 0.1 s, 5 of them failing: 5% errors
        while not stop_traffic.wait(0.1):
            requests.labels("payment", "200").inc(95)
            requests.labels("payment", "500").inc(5)

    feeder = threading.Thread(target=traffic, daemon=True)
    feeder.start()
    try:
        with prometheus_scraping(tmp_path, registry, "payment") as base:
            ws = make_ws(
                tmp_path / "ws",
                f"""\
name: sandbox
monitoring: {{prometheus: "{base}", sloth: [payment-slo.yaml]}}
services:
  - name: payment
    probes:
      - {{name: payment-health, http: {{url: "{base}/-/ready"}}}}
""",
            )
            (ws.root / "payment-slo.yaml").write_text(
                SLOTH,  # 99.9 % of http_requests_total{service="payment"} not 5xx
                encoding="utf-8",
            )
            config_m = load_monitoring(ws, "sandbox")
            (s,) = config_m.slos
            query = slo_prometheus.http_query(base)

            def evaluated() -> Any:
                status = slo_prometheus.evaluate(s, query=query, now=int(time.time()))
                return status if status.checks[0].long_rate is not None else None

            status = until(evaluated, 60)
            one_hour = next(c for c in status.checks if c.long == 3600)
            assert one_hour.long_rate == pytest.approx(50.0, rel=0.2)  # 5% errors / 0.1% budget
            assert status.alert == "page"
            cache = slo_prometheus.PrometheusSlos()
            cache.refresh(config_m, now=int(time.time()))
            assert cache.get("sandbox", s)[0] is not None
            from opsbook.db import open_database

            db = open_database(f"sqlite:///{tmp_path / 'state.db'}")
            try:
                (row,) = slo_statuses(db=db, config=config_m)  # the CLI path, queried now
            finally:
                db.close()
            assert row["evaluated_by"] == "prometheus" and row["error"] is None
            assert row["alert"] == "page"
            bad = slo_prometheus.http_query(base)
            with pytest.raises(RuntimeError, match="Prometheus"):
                bad("sum(rate(", int(time.time()))
    finally:
        stop_traffic.set()
