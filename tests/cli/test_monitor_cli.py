"""`opsbook monitor|alerts|report` through the real console script."""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from opsbook.db import open_database
from opsbook.monitoring import store
from opsbook.monitoring.probes import ProbeResult
from tests.cli.conftest import Run
from tests.conftest import free_port
from tests.monitoring.conftest import (
    Site,
    make_ws,
    site,  # the fixture
)

__all__ = ["site"]


@pytest.fixture
def site_url(site: Site) -> str:
    return site.url


@pytest.fixture
def ws_root(tmp_path: Path, site_url: str) -> Path:
    dead = free_port()
    env = f"""\
name: sandbox
services:
  - name: payment
    health_url: {site_url}/health
    probes:
      - name: payment-health
        http: {{url: "${{service.health_url}}"}}
        expect: ['status == 200', 'json.status == "UP"']
  - name: account
    probes:
      - {{name: account-port, tcp: "127.0.0.1:{dead}", timeout: 1s}}
monitoring:
  slos: [{{name: payment-availability, service: payment, objective: 99.9}}]
"""
    return make_ws(tmp_path / "ws", env).root


def test_monitor_check_prints_a_table_and_stores_results(ob: Run, ws_root: Path) -> None:
    done = ob("monitor", "check")
    assert done.returncode == 1, done.stderr  # account-port is closed
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["SERVICE", "PROBE", "KIND", "STATUS", "LATENCY", "DETAIL"]
    assert any(line.split()[:4] == ["payment", "payment-health", "http", "ok"] for line in lines)
    assert any("FAIL" in line and "account-port" in line for line in lines)
    assert "1/2 probes ok" in done.stdout
    time.sleep(1.05)  # samples are kept per probe and second: the second check is a new one
    as_json = json.loads(ob("monitor", "check", "--json").stdout)
    assert as_json["ok"] is False and len(as_json["results"]) == 2
    db = open_database(f"sqlite:///{ws_root / '.opsbook' / 'opsbook.db'}")
    assert db.one("SELECT COUNT(*) AS n FROM mon_samples") == {"n": 4}
    db.close()


def test_bad_configuration_is_a_clear_error(ob: Run, ws_root: Path) -> None:
    path = ws_root / "environments" / "sandbox.yaml"
    path.write_text(path.read_text().replace("objective: 99.9", "objective: 100"))
    done = ob("monitor", "check")
    assert done.returncode == 2
    assert "sandbox.yaml:13: SLO 'payment-availability': objective must be above 0" in done.stderr
    assert "Traceback" not in done.stderr
    assert ob("monitor", "check", "--env", "nope").returncode == 2


def test_alerts_list_ack_silence(ob: Run, ws_root: Path) -> None:
    from opsbook.monitoring import alerts

    db = open_database(f"sqlite:///{ws_root / '.opsbook' / 'opsbook.db'}")
    alerts.ingest(
        db,
        alerts=[
            alerts.IncomingAlert(
                "f00d",
                "firing",
                {"alertname": "PaymentDown", "service": "payment"},
                {},
                "2026-11-26T07:00:00Z",
                None,
            )
        ],
        source="test",
        actor="test",
        runbook_for=lambda a: "troubleshooting#service-connectivity",
    )
    db.close()
    listed = ob("alerts", "list")
    assert (
        "PaymentDown" in listed.stdout and "troubleshooting#service-connectivity" in listed.stdout
    )
    acked = ob("alerts", "ack", "f00d", "--comment", "looking", "--as", "alice")
    assert acked.returncode == 0 and "acknowledged by alice" in acked.stdout
    assert ob("alerts", "ack", "nope").returncode == 2
    silenced = ob(
        "alerts",
        "silence",
        "--match",
        "service=payment",
        "--for",
        "2h",
        "--comment",
        "maintenance CHG-7",
        "--as",
        "bob",
        "--json",
    )
    assert silenced.returncode == 0, silenced.stderr
    sid = json.loads(silenced.stdout)["id"]
    assert "(silenced)" in ob("alerts", "list").stdout
    assert "maintenance CHG-7" in ob("alerts", "silences").stdout
    assert ob("alerts", "silence", "--match", "x", "--for", "2h", "--comment", "c").returncode == 2
    bad_regex = ob("alerts", "silence", "--match", "pod=~(", "--for", "2h", "--comment", "c")
    assert bad_regex.returncode == 2 and "--match" in bad_regex.stderr
    assert "Traceback" not in bad_regex.stderr
    assert ob("alerts", "expire", str(sid), "--as", "bob").returncode == 0
    assert "(silenced)" not in ob("alerts", "list").stdout


def test_report_sla_and_slo(ob: Run, ws_root: Path, tmp_path: Path) -> None:
    db = open_database(f"sqlite:///{ws_root / '.opsbook' / 'opsbook.db'}")
    start = int(datetime(2026, 11, 3, tzinfo=UTC).timestamp())
    results = [
        ProbeResult("payment-health", "payment", "http", not 60 <= i < 70, 20, start + i * 60)
        for i in range(1440)
    ]
    store.record_results(db, environment="sandbox", results=results)
    db.close()
    md = ob("report", "sla", "--month", "2026-11")
    assert md.returncode == 0, md.stderr
    assert re.search(
        r"\| payment \| 99\.9% \| 99\.306% \| [0-9.]+ h \([0-9.]+%\) \| 10\.0 \|", md.stdout
    )
    out = tmp_path / "sla.html"
    assert (
        ob("report", "sla", "--month", "2026-11", "--format", "html", "--out", str(out)).returncode
        == 0
    )
    assert out.read_text().count("<svg") == 2
    data = json.loads(ob("report", "sla", "--month", "2026-11", "--format", "json").stdout)
    assert data["services"][0]["downtime_minutes"] == 10
    assert ob("report", "sla", "--month", "2026-11", "--format", "pdf").returncode == 2
    assert ob("report", "sla", "--month", "11/2026").returncode == 2
    slo = ob("monitor", "slo", "--json")
    assert json.loads(slo.stdout)[0]["name"] == "payment-availability"


def test_help_stays_cheap(ob: Run) -> None:
    done = ob("--help")
    assert done.returncode == 0 and "monitor" in done.stdout and "alerts" in done.stdout


def test_report_sla_as_pdf(ob: Run, ws_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "sla.pdf"
    done = ob("report", "sla", "--month", "2026-11", "--format", "pdf", "--out", str(out))
    assert done.returncode == 0, done.stderr
    data = out.read_bytes()
    assert data.startswith(b"%PDF-") and b"/Type /Page" in data
    no_out = ob("report", "sla", "--month", "2026-11", "--format", "pdf")
    assert no_out.returncode == 2 and "--out" in no_out.stderr
    no_browser = ob(
        "report",
        "sla",
        "--month",
        "2026-11",
        "--format",
        "pdf",
        "--out",
        str(out),
        env={"OPSBOOK_CHROMIUM": str(tmp_path / "no-such-browser")},
    )
    assert no_browser.returncode == 2 and "OPSBOOK_CHROMIUM" in no_browser.stderr
