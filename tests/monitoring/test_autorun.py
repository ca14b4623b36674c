"""Alert rules that start their procedure: once per firing episode, only while the alert is
still firing and nobody took it, rate-limited, and stopped by a circuit breaker after
repeated failures. Real engine runs of real procedures."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from opsbook.config import Settings
from opsbook.db import Database, open_database
from opsbook.executions import operations
from opsbook.executions.context import AppContext, build_context
from opsbook.executions.settings import ServerSettings
from opsbook.monitoring import alerts, autorun
from opsbook.monitoring.config import load_monitoring
from opsbook.workspace import Workspace
from tests.monitoring.conftest import make_ws

RUNBOOK = """\
---
id: fixes
title: Fixes
purpose: Procedures alerts start on their own
owner: operations
review_interval: 90d
last_reviewed: 2026-11-20
tags: [test]
---

# Fixes

## Fix

```yaml procedure
id: fix
permissions: [operator]
risk: low
params:
  service: {type: choice, choices: [account, payment], required: true}
```

### Restart it

```sh {timeout=30s}
echo '{"restarted": "{{ params.service }}"}'
```

```expect
exit_code == 0
```

## Broken

```yaml procedure
id: broken
permissions: [operator]
risk: low
```

### Fail

```sh {timeout=30s}
exit 1
```

```expect
exit_code == 0
```
"""

ENV = """\
name: sandbox
services: [{name: payment}, {name: account}]
alerting:
  auto_run:
    - {alertname: PaymentDown, service: payment, procedure: "fixes#fix",
       params: {service: "${labels.service}"}, max_per_hour: 2}
    - {alertname: Hopeless, procedure: "fixes#broken", max_per_hour: 10, breaker_failures: 2}
"""
T0 = datetime(2026, 11, 26, 7, 0, tzinfo=UTC)


@pytest.fixture
def ctx(tmp_path: Path) -> Iterator[AppContext]:
    ws = make_ws(tmp_path / "ws", ENV)
    (ws.runbooks_dir / "fixes.md").write_text(RUNBOOK, encoding="utf-8")
    url = f"sqlite:///{ws.state_dir / 'opsbook.db'}"
    ws.state_dir.mkdir(parents=True, exist_ok=True)
    c = build_context(
        settings=Settings(database_url=url),
        server=ServerSettings(host="127.0.0.1", port=1, schedules=False),
        workspace=ws,
        db=open_database(url),
    )
    yield c
    c.db.close()


def fire(
    c: AppContext, name: str, fp: str, starts: datetime = T0, service: str = "payment"
) -> None:
    alerts.ingest(
        c.db,
        alerts=[
            alerts.IncomingAlert(
                fp, "firing", {"alertname": name, "service": service}, {}, alerts.iso(starts), None
            )
        ],
        source="test",
        actor="test",
        runbook_for=lambda a: None,
        now=starts,
    )


async def run(c: AppContext, now: datetime) -> list[str]:
    config = load_monitoring(c.workspace, "sandbox")
    started = await autorun.run_due(c, rules=config.auto_run, environment="sandbox", now=now)
    await operations.drain(c, 20)
    return started


async def test_starts_once_per_episode_with_label_params(ctx: AppContext) -> None:
    fire(ctx, "PaymentDown", "fp1")
    (eid,) = await run(ctx, T0 + timedelta(minutes=1))
    row = ctx.db.one(
        "SELECT procedure_id, state, started_by, params FROM executions WHERE id = ?", (eid,)
    )
    assert row is not None and row["procedure_id"] == "fix" and row["state"] == "succeeded"
    assert row["started_by"] == "system:scheduler" and '"payment"' in row["params"]
    assert await run(ctx, T0 + timedelta(minutes=2)) == []  # same episode: not again
    event = ctx.db.one("SELECT actor, subject FROM events WHERE action = 'alert.autorun'")
    assert event and event["actor"] == "system:monitoring" and "fp1" in event["subject"]


async def test_precondition_and_rate_limit(ctx: AppContext) -> None:
    fire(ctx, "PaymentDown", "acked")
    alerts.acknowledge(ctx.db, ref="acked", actor="alice", now=T0)
    fire(ctx, "PaymentDown", "other-service", service="account")
    assert await run(ctx, T0 + timedelta(minutes=1)) == []  # taken by a person / no rule
    for i in range(3):
        fire(ctx, "PaymentDown", f"burst{i}")
    assert len(await run(ctx, datetime.now(UTC))) == 2  # max_per_hour: 2


async def test_circuit_breaker_stops_a_failing_rule(ctx: AppContext) -> None:
    for i in range(2):
        fire(ctx, "Hopeless", f"h{i}", starts=T0 + timedelta(minutes=i))
        assert len(await run(ctx, datetime.now(UTC))) == 1
    states = ctx.db.query("SELECT state FROM executions WHERE procedure_id = 'broken'")
    assert [s["state"] for s in states] == ["failed", "failed"]
    fire(ctx, "Hopeless", "h9", starts=T0 + timedelta(minutes=9))
    assert await run(ctx, datetime.now(UTC)) == []
    assert ctx.db.one("SELECT action FROM events WHERE action = 'alert.autorun_blocked'")


def test_rules_are_validated(tmp_path: Path) -> None:
    from opsbook.errors import ValidationError

    ws = make_ws(tmp_path, ENV.replace('procedure: "fixes#fix"', 'procedure: "fixes"'))
    with pytest.raises(ValidationError, match="auto_run"):
        load_monitoring(ws, "sandbox")


async def test_an_episode_another_replica_claimed_is_not_started_again(ctx: AppContext) -> None:
    """Replica A claimed this firing episode and is starting its run (its `alert.autorun`
    record is not written yet): replica B, reading the same alert, starts nothing."""
    fire(ctx, "PaymentDown", "fp1")
    rule = load_monitoring(ctx.workspace, "sandbox").auto_run[0]
    starts = ctx.db.one("SELECT starts_at FROM mon_alerts WHERE fingerprint = 'fp1'")
    assert starts is not None
    ctx.db.execute(
        "INSERT INTO schedule_claims (ref, due_at, claimed_by) VALUES (?, ?, ?)",
        (f"autorun:{rule.key}:fp1", str(starts["starts_at"]), "replica-a"),
    )
    assert await run(ctx, T0 + timedelta(minutes=1)) == []
    assert ctx.db.one("SELECT id FROM executions") is None


async def test_a_start_that_failed_is_tried_again(ctx: AppContext) -> None:
    fire(ctx, "PaymentDown", "fp1")
    (ctx.workspace.runbooks_dir / "fixes.md").rename(ctx.workspace.root / "fixes.md.off")
    assert await run(ctx, T0 + timedelta(minutes=1)) == []
    assert ctx.db.one("SELECT id FROM events WHERE action = 'alert.autorun_failed'")
    (ctx.workspace.root / "fixes.md.off").rename(ctx.workspace.runbooks_dir / "fixes.md")
    ctx._checked = 0.0  # the catalogue is re-read at once, not after a second
    assert len(await run(ctx, T0 + timedelta(minutes=2))) == 1


def _context(ws_root: Path, url: str) -> AppContext:
    """One `opsbook serve` replica's context on the shared database."""
    return build_context(
        settings=Settings(database_url=url),
        server=ServerSettings(host="127.0.0.1", port=1, schedules=False),
        workspace=Workspace.load(ws_root),
        db=open_database(url),
    )


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def shared_url(request: pytest.FixtureRequest, ctx: AppContext) -> str:
    """The database two replicas share: the workspace's SQLite file, or a PostgreSQL
    database of the test's own."""
    if request.param == "sqlite":
        return ctx.db.url
    pg: Database = request.getfixturevalue("fresh_pg")
    return pg.url


async def test_two_replicas_racing_start_one_run(ctx: AppContext, shared_url: str) -> None:
    """Both passes run at once on two connections: each reads the alert as due with no
    `alert.autorun` record yet; only the one whose claim is inserted starts the run."""
    replicas = [_context(ctx.workspace.root, shared_url) for _ in range(2)]
    try:
        fire(replicas[0], "PaymentDown", "fp1")
        when = T0 + timedelta(minutes=1)
        rules = load_monitoring(ctx.workspace, "sandbox").auto_run
        results = await asyncio.gather(
            *(autorun.run_due(c, rules=rules, environment="sandbox", now=when) for c in replicas)
        )
        for c in replicas:
            await operations.drain(c, 20)
        db = replicas[0].db
        assert sorted(len(r) for r in results) == [0, 1]
        assert len(db.query("SELECT id FROM executions")) == 1
        assert len(db.query("SELECT id FROM events WHERE action = 'alert.autorun'")) == 1
        claims = db.query("SELECT ref FROM schedule_claims WHERE ref LIKE ?", ("autorun:%",))
        assert len(claims) == 1 and claims[0]["ref"].endswith(":fp1")
    finally:
        for c in replicas:
            c.db.close()
