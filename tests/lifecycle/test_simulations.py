"""A graded drill on the real sandbox (the session sandbox of tests/lifecycle): the scenario's
fault is injected and a drill incident declared; the trainee runs the fixing procedure through
the real engine; ending the drill scores it from the record (detect, mitigate, procedures,
safety), writes the debrief, resolves the incident, leaves the sandbox healthy and, with a
passed assessment, certifies the trainee. A drill nobody works is not passed, its faults are
cleared, and the debrief says what was missed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from opsbook.config import Settings
from opsbook.db import Database, open_database
from opsbook.engine.states import State
from opsbook.errors import ConflictError
from opsbook.executions.local import make_engine
from opsbook.lifecycle import certifications, simulations
from opsbook.lifecycle.training_config import load_training
from opsbook.runbooks.parser import parse_file
from opsbook.workspace import Workspace, load_environment
from opsbook.workspace.init import init_workspace
from tests.sandbox.harness import Sandbox, wait_for

pytestmark = pytest.mark.slow

FIX = """\
---
id: drill-fix
title: Drill fixes
owner: operations
---

# Drill fixes

## Restart payment

```yaml procedure
permissions: [operator]
when_to_use: reactive
```

### Restart the payment service

Starts the payment service again.

```action
platform.restart: {service: payment}
```

```expect
result != null
```

### Every service is healthy

```action {retries=10 retry_delay=1s}
platform.health: {}
```

```expect
result.healthy == true
```
"""

TRAINING = """\
require_certification: true
scenarios:
  payment-crash:
    title: The payment service has crashed
    area: platform-operations
    faults:
      - {fault: crash, service: payment}
    expected: [drill-fix#restart-payment]
    time_limit: 10m
"""


@pytest.fixture
def ws(sb: Sandbox, tmp_path: Path) -> Workspace:
    """A workspace of its own (init's files) on the session sandbox's services."""
    root = tmp_path / "ws"
    init_workspace(target=root)
    env: dict[str, Any] = sb.environment()
    env.setdefault("sandbox", {})["data_dir"] = str(sb.data_dir)
    (root / "environments" / "sandbox.yaml").write_text(yaml.safe_dump(env), encoding="utf-8")
    (root / "runbooks" / "drill-fix.md").write_text(FIX, encoding="utf-8")
    (root / "training.yaml").write_text(TRAINING, encoding="utf-8")
    return Workspace.load(root)


@pytest.fixture
def db(ws: Workspace) -> Iterator[Database]:
    database = open_database(f"sqlite:///{ws.state_dir / 'opsbook.db'}")
    yield database
    database.close()


def passed_assessment(db: Database, person: str) -> None:
    db.insert(
        "INSERT INTO training_assessments (person, area, quiz_digest, questions, correct, score,"
        " pass_mark, passed, detail, submitted_at) VALUES (?, 'platform-operations', 'x', 10, 9,"
        " 90, 80, 1, '[]', '2026-12-01T00:00:00Z')",
        (person,),
    )


async def test_a_drill_worked_on_the_real_sandbox_is_graded(
    sb: Sandbox, ws: Workspace, db: Database
) -> None:
    config = load_training(ws)
    passed_assessment(db, "tina")
    drill = simulations.start(
        db=db, workspace=ws, config=config, scenario="payment-crash", trainee="tina", actor="lead"
    )
    assert drill.state == "running" and drill.incident
    wait_for(lambda: sb.service("payment")["ready"] == 0, timeout=15)
    inc = db.one("SELECT drill, status FROM incidents WHERE id = 1")
    assert inc == {"drill": 1, "status": "open"} or (inc is not None and inc["drill"] == 1)
    with pytest.raises(ConflictError, match="still running"):
        simulations.start(
            db=db, workspace=ws, config=config, scenario="payment-crash", trainee="ole", actor="x"
        )

    rb = parse_file(ws.runbooks_dir / "drill-fix.md")
    outcome = await make_engine(ws, Settings.from_env(), db).start(
        runbook=rb,
        procedure=rb.procedures[0],
        environment=load_environment(ws, "sandbox"),
        params={},
        started_by="tina",
    )
    assert outcome.state is State.SUCCEEDED

    ended = simulations.end(db=db, workspace=ws, config=config, drill_id=drill.id, actor="lead")
    result = ended.result
    assert result is not None
    assert ended.state == "ended" and ended.passed is True
    assert result["mitigated"] is True
    assert result["procedures_used"] == ["drill-fix#restart-payment"]
    assert result["procedures_missed"] == []
    assert result["unsafe"] == []
    assert result["detected_after_s"] is not None and result["mitigated_after_s"] is not None
    assert result["detected_after_s"] <= result["mitigated_after_s"]
    assert result["parts"]["procedures"] == 30.0 and result["parts"]["safety"] == 10.0
    assert ended.score == pytest.approx(sum(result["parts"].values()))
    assert ended.debrief is not None
    assert "# Drill debrief: The payment service has crashed" in ended.debrief
    assert "ran drill-fix#restart-payment on sandbox: succeeded" in ended.debrief
    # the drill incident is resolved, the trainee is certified (assessment + drill)
    assert db.one("SELECT status FROM incidents WHERE id = 1") == {"status": "resolved"}
    cert = certifications.valid(db=db, config=config, person="tina", area="platform-operations")
    assert cert is not None and cert.drill_id == drill.id
    # ending again returns the stored score
    again = simulations.end(db=db, workspace=ws, config=config, drill_id=drill.id, actor="lead")
    assert again.score == ended.score and again.ended_at == ended.ended_at
    actions = [r["action"] for r in db.query("SELECT action FROM events ORDER BY id")]
    assert "training.drill.started" in actions and "training.drill.scored" in actions
    assert "training.certification.awarded" in actions


def test_a_drill_nobody_works_is_not_passed_and_cleaned_up(
    sb: Sandbox, ws: Workspace, db: Database
) -> None:
    config = load_training(ws)
    drill = simulations.start(
        db=db, workspace=ws, config=config, scenario="payment-crash", trainee="idle", actor="lead"
    )
    wait_for(lambda: sb.service("payment")["ready"] == 0, timeout=15)
    ended = simulations.end(db=db, workspace=ws, config=config, drill_id=drill.id, actor="lead")
    assert ended.passed is False
    assert ended.result is not None
    assert ended.result["mitigated"] is False
    assert ended.result["detected_after_s"] is None
    assert ended.result["procedures_missed"] == ["drill-fix#restart-payment"]
    assert ended.debrief is not None
    assert "Run `opsbook run drill-fix#restart-payment --env sandbox`" in ended.debrief
    assert ended.score == 0.0 + ended.result["parts"]["safety"]
    # the drill's fault was cleared: nothing is left active
    assert sb.control().call("faults")["faults"] == []
