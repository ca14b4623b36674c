"""End to end on the real sandbox: the monitoring background of `opsbook serve` probes the
services, detects an injected crash within one interval (plus the failures needed to alert),
raises an alert linked to its procedure, resolves it after the restart, escalates through the
notifier, makes the morning health check report and an SLA report showing the downtime."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from opsbook.config import Settings
from opsbook.db import open_database
from opsbook.executions.context import AppContext, build_context
from opsbook.executions.settings import ServerSettings
from opsbook.monitoring import alerts, background, health
from opsbook.monitoring.config import load_monitoring
from opsbook.monitoring.escalation import Contact
from opsbook.monitoring.sla import sla_report
from opsbook.sandbox import chaos
from opsbook.workspace import Workspace
from tests.sandbox.harness import Sandbox, running_sandbox, sandbox_env

pytestmark = pytest.mark.slow


class Pager:
    """The test double of the incidents' notifier."""

    def __init__(self) -> None:
        self.pages: list[tuple[str, str]] = []

    def notify(self, *, alert: Mapping[str, Any], level: Contact, reason: str) -> None:
        self.pages.append((str(alert["alertname"]), level.level))


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    env = sandbox_env()
    for svc in env["services"]:
        svc["probes"] = [
            {
                "name": f"{svc['name']}-health",
                "http": {"url": "${service.health_url}"},
                "interval": "1s",
                "timeout": "1s",
                "expect": ["status == 200", 'json.status == "UP"'],
                "failures_to_alert": 2,
            }
        ]
    env["monitoring"]["slos"] = [
        {"name": "payment-availability", "service": "payment", "objective": 99.9}
    ]
    env["monitoring"]["service_runbooks"] = {"*": "troubleshooting#service-connectivity"}
    env["monitoring"]["escalation"] = [{"severity": "page", "after": "1s", "level": "level-2"}]
    with running_sandbox(tmp_path_factory.mktemp("mon") / "ws", env) as sb:
        yield sb


def context(sb: Sandbox) -> AppContext:
    url = f"sqlite:///{sb.ws.state_dir / 'opsbook.db'}"
    sb.ws.state_dir.mkdir(parents=True, exist_ok=True)
    toml = sb.ws.root / "opsbook.toml"
    toml.write_text(toml.read_text() + "\n[monitoring]\nhousekeeping_seconds = 2\n")
    return build_context(
        settings=Settings(database_url=url),
        server=ServerSettings(host="127.0.0.1", port=1, schedules=False),
        workspace=Workspace.load(sb.ws.root),
        db=open_database(url),
    )


async def until(check: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        await asyncio.sleep(0.2)
    raise AssertionError(f"not within {timeout}s")


async def test_serve_detects_a_crash_and_reports_it(sandbox: Sandbox, tmp_path: Path) -> None:
    ctx = context(sandbox)
    pager = Pager()
    ctx.cache["monitoring.notifier"] = pager
    (sandbox.ws.root / "contacts.yaml").write_text(
        "levels:\n  - {name: level-2, title: Engineering, contacts: []}\n", encoding="utf-8"
    )
    task = asyncio.create_task(background.run_background(ctx))
    try:
        await until(lambda: len(ctx.db.query("SELECT DISTINCT probe_id FROM mon_samples")) == 4, 15)
        started = time.monotonic()
        await asyncio.to_thread(
            chaos.inject,
            control=sandbox.control(),
            fault="crash",
            service="payment",
            actor="pytest",
        )

        def firing() -> list[dict[str, Any]]:
            return [a for a in alerts.list_alerts(ctx.db) if a["alertname"] == "ProbeFailing"]

        (alert,) = await until(firing, 15)
        assert time.monotonic() - started < 10  # 2 failed 1 s checks, a flush, slack for CI
        assert alert["service"] == "payment" and alert["labels"]["probe"] == "payment-health"
        assert alert["runbook"] == "troubleshooting#service-connectivity"
        await until(lambda: pager.pages, 15)  # housekeeping every 2 s here (30 s default)
        assert pager.pages[0] == ("ProbeFailing", "level-2")

        await asyncio.to_thread(sandbox.control().call, "restart", {"service": "payment"})
        await until(lambda: not firing(), 30)
        (resolved,) = [
            a
            for a in alerts.list_alerts(ctx.db, status="resolved")
            if a["alertname"] == "ProbeFailing"
        ]
        assert resolved["ends_at"]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    # The morning health check report of a finished run (the engine writes this row).
    now = alerts.iso(datetime.now(UTC))
    ctx.db.execute(
        "INSERT INTO executions (id, runbook_id, runbook_path, runbook_hash, procedure_id,"
        " environment, params, digest, state, state_name, started_by, created_at, updated_at,"
        " finished_at) VALUES ('abc123', 'system-monitoring', 'x', 'h', 'morning-health-check',"
        " 'sandbox', '{}', 'd', 'succeeded', 'Succeeded', 'alice', ?, ?, ?)",
        (now, now, now),
    )
    assert background.make_health_reports(ctx) == ["abc123"]
    report = health.get_report(ctx.db, execution_id="abc1")
    assert "# Morning health check — sandbox" in report["markdown"]
    assert "ProbeFailing" in report["markdown"]
    assert report["html"].count("<svg") == 4

    config = load_monitoring(sandbox.ws, "sandbox")
    sla = sla_report(ctx.db, config=config, month=datetime.now(UTC).strftime("%Y-%m"))
    by = {s.service: s for s in sla.services}
    assert 0 < by["payment"].downtime_minutes < 2  # a crash of a few seconds
    assert by["account"].downtime_minutes == 0
    ctx.db.close()
