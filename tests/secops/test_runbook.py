"""The shipped daily-security-checks procedure on the real sandbox: it calls the security.check
action per family, passes on a clean sandbox (parking at its manual review), and fails the
step of the family a security fault belongs to."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from opsbook.config import Settings
from opsbook.db import open_database
from opsbook.engine.states import State
from opsbook.executions.local import make_engine
from opsbook.runbooks.parser import parse_file
from opsbook.workspace import load_environment
from tests.sandbox.harness import Sandbox, running_sandbox

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """A sandbox of its own: the attacks other tests inject stay in the logs the checks read
    for 15 minutes (brute force) to a day (token use), as they would in production."""
    with running_sandbox(tmp_path_factory.mktemp("secops-runbook") / "ws") as sb:
        yield sb


RUNBOOK = (
    Path(__file__).resolve().parents[2]
    / "src/opsbook/workspace/templates/runbooks/06_security_operations.md"
)


async def _run(sb: Sandbox, tmp_path: Path) -> tuple[State, dict[str, str], dict[str, object]]:
    shutil.copy(RUNBOOK, sb.ws.runbooks_dir / RUNBOOK.name)
    # the workspace's own database: the action records its findings there
    db = open_database(Settings.from_env().database_url_for(sb.ws.state_dir))
    try:
        rb = parse_file(sb.ws.runbooks_dir / RUNBOOK.name)
        proc = rb.procedure("daily-security-checks")
        assert proc is not None
        out = await make_engine(sb.ws, Settings.from_env(), db).start(
            runbook=rb,
            procedure=proc,
            environment=load_environment(sb.ws, "sandbox"),
            params={},
            started_by="pytest",
        )
        steps = {
            r["step_id"]: r["state"]
            for r in db.query(
                "SELECT step_id, state FROM step_runs WHERE execution_id = ?", (out.execution_id,)
            )
        }
        found = db.one(
            "SELECT COUNT(*) AS n FROM security_findings WHERE state = 'open'"
            " AND rule_id = 'data.pan-in-logs'"
        )
        return out.state, steps, {"open_findings": found["n"] if found else 0}
    finally:
        db.close()
        (sb.ws.runbooks_dir / RUNBOOK.name).unlink(missing_ok=True)


async def test_the_daily_checks_pass_on_a_clean_sandbox(sb: Sandbox, tmp_path: Path) -> None:
    state, steps, _ = await _run(sb, tmp_path)
    assert state is State.WAITING  # the manual review of the security alerts
    for step in ("tls", "identity", "card-data", "workspace", "platform", "deadlines"):
        assert steps[step] == "succeeded", steps


async def test_a_card_number_in_a_log_fails_the_card_data_step(sb: Sandbox, tmp_path: Path) -> None:
    sb.control().call("inject", {"fault": "pan-in-log", "service": "payment", "actor": "pytest"})
    state, steps, found = await _run(sb, tmp_path)
    assert state is State.FAILED
    assert steps["card-data"] == "failed"
    assert steps["tls"] == "succeeded"
    assert found["open_findings"] >= 1
