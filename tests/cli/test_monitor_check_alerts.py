"""`opsbook monitor check` raises and resolves probe alerts itself (issue 18 §2), through the
same rules `opsbook serve` uses, so a team that only runs the CLI from cron still gets alerts."""

from __future__ import annotations

import json
import time

from tests.cli.conftest import Run
from tests.cli.test_monitor_cli import site_url, ws_root  # the fixtures
from tests.monitoring.conftest import Site, site

__all__ = ["site", "site_url", "ws_root"]


def _probe_alerts(ob: Run) -> dict[str, str]:
    out = ob("alerts", "list", "--all", "--json")
    assert out.returncode == 0, out.stderr
    return {
        a["labels"]["probe"]: a["status"]
        for a in json.loads(out.stdout)
        if a["alertname"] == "ProbeFailing"
    }


def test_check_fires_after_failures_to_alert_and_resolves(ob: Run, site: Site) -> None:
    site.status = 503
    first = ob("monitor", "check")
    assert first.returncode == 1
    assert _probe_alerts(ob) == {}  # one failure: failures_to_alert is 2
    time.sleep(1.05)  # samples are kept per probe and second
    second = ob("monitor", "check")
    assert "alert ProbeFailing firing: payment-health" in second.stdout
    assert _probe_alerts(ob) == {"payment-health": "firing", "account-port": "firing"}

    site.status = 200
    time.sleep(1.05)
    third = json.loads(ob("monitor", "check", "--json").stdout)
    assert {(a["probe"], a["status"]) for a in third["alerts"]} == {("payment-health", "resolved")}
    assert _probe_alerts(ob) == {"payment-health": "resolved", "account-port": "firing"}
