"""The banking runbooks run for real: each scenario gets its own copy of a fresh `opsbook init`
workspace with the fake sandbox (real HTTP servers on 127.0.0.1, a real SQLite ledger) and fake
`platform.*` actions, and is driven through the real CLI — a person confirms each manual step,
other people approve.

The scenarios run concurrently once per module; each test checks one scenario's outcome. They
take ~30 s of CPU in all (every CLI call is a new Python process), hence the `slow` mark.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from opsbook.workspace.init import init_workspace
from tests.workspace.conftest import EXAMPLE_PARAMS
from tests.workspace.drive import Driver, failed_steps
from tests.workspace.fake_sandbox import fake_sandbox

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Scenario:
    ref: str
    params: dict[str, str] = field(default_factory=dict)
    down: tuple[str, ...] = ()
    balanced: bool = True
    sandbox: bool = True  # False: no fake sandbox and no fake platform actions at all


@dataclass
class Outcome:
    root: Path
    execution: dict[str, Any]
    first_exit: int | None

    def states(self) -> dict[str, str]:
        return {s["step"]: s["state_name"] for s in self.execution["steps"]}

    def result(self, step: str) -> Any:
        """A step's stored result: its result fields (a list of them for a for_each step)."""
        stored = next(s["result"] for s in self.execution["steps"] if s["step"] == step)
        if "items" in stored:
            return [item["fields"] for item in stored["items"]]
        return stored.get("fields", stored)


def scenario(ref: str, **kw: Any) -> Scenario:
    return Scenario(ref, params=kw.pop("params", EXAMPLE_PARAMS.get(ref, {})), **kw)


SCENARIOS: dict[str, Scenario] = {
    "morning": scenario("system-monitoring#morning-health-check"),
    "morning-unbalanced": scenario("system-monitoring#morning-health-check", balanced=False),
    "classification": scenario("incident-response#incident-classification"),
    # deployments and migrations need the real sandbox (releases side by side, the ledger's
    # schema): tests/deploy runs them there
    "connectivity-down": scenario("troubleshooting#service-connectivity", down=("payment",)),
    "connectivity-up": scenario("troubleshooting#service-connectivity"),
    "backup": scenario("backup-recovery#backup-verification"),
    "demo": scenario("demo#smoke-test", sandbox=False),
    "approval-demo": scenario("demo#approval-demo", sandbox=False),
}


def play(template: Path, name: str, sc: Scenario) -> Outcome:
    root = template.parent / name
    shutil.copytree(template, root)
    if not sc.sandbox:
        driver = Driver(root, fake_platform=False)
        return Outcome(root, driver.run(sc.ref, sc.params), driver.first_exit)
    with fake_sandbox(root, balanced=sc.balanced) as sandbox:
        if sc.down:
            sandbox.set_down(*sc.down)
        driver = Driver(root)
        return Outcome(root, driver.run(sc.ref, sc.params), driver.first_exit)


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Outcome]]:
    # One workspace with its state database created, copied for each scenario (creating the
    # database is the slowest part of a first command).
    template = tmp_path_factory.mktemp("runs") / "template"
    init_workspace(target=template)
    created = Driver(template, fake_platform=False).ob("executions", "list", "--json")
    assert created.returncode == 0, created.stderr
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {name: pool.submit(play, template, name, sc) for name, sc in SCENARIOS.items()}
        yield {name: f.result() for name, f in futures.items()}


def succeeded(outcome: Outcome) -> None:
    assert outcome.execution["state"] == "succeeded", failed_steps(outcome.execution)


def test_morning_health_check(outcomes: dict[str, Outcome]) -> None:
    out = outcomes["morning"]
    succeeded(out)
    assert out.result("ledger")["rows"] == [{"total": 0, "entries": 2}]
    assert len(out.result("health")) == 4


def test_morning_health_check_stops_on_an_unbalanced_ledger(
    outcomes: dict[str, Outcome],
) -> None:
    out = outcomes["morning-unbalanced"]
    assert out.execution["state"] == "failed"
    assert out.states()["ledger"] == "Failed"
    assert "review-the-dashboards-and-overnight-alerts" not in out.states()


def test_incident_classification_declares_a_major_incident(outcomes: dict[str, Outcome]) -> None:
    out = outcomes["classification"]
    succeeded(out)
    assert out.result("classify")["result"]["severity"] == "SEV-2"
    assert out.states()["declare-a-major-incident"] == "Succeeded"


def test_service_connectivity_restarts_a_down_service(outcomes: dict[str, Outcome]) -> None:
    out = outcomes["connectivity-down"]
    succeeded(out)
    states = out.states()
    assert states["restart-service"] == "Succeeded"
    assert states["verify-restart"] == "Succeeded"
    assert "check-dependencies" not in states


def test_service_connectivity_examines_a_running_service(outcomes: dict[str, Outcome]) -> None:
    out = outcomes["connectivity-up"]
    succeeded(out)
    states = out.states()
    assert "restart-service" not in states
    assert states["check-dependencies"] == "Succeeded"
    assert states["logs"] == "Succeeded"


def test_backup_verification_restores_and_checks(outcomes: dict[str, Outcome]) -> None:
    out = outcomes["backup"]
    succeeded(out)
    backup = out.result("backup")["result"]
    assert backup["state"] == "ok" and backup["verify_ok"] == 1
    restored = backup["verify_result"]["restored"]
    assert restored["integrity"] == "ok" and restored["counts"]["entries"] == 2
    assert [c["location"] for c in backup["copies"]] == ["primary", "dr"]
    assert out.result("prune")["result"] == {"environment": "sandbox", "keep": 7, "expired": []}
    assert out.result("health")["result"]["critical_failed"] == 0


def test_the_demo_runs_without_the_sandbox(outcomes: dict[str, Outcome]) -> None:
    """What `make demo` does: the smoke test parks at its manual step (exit 3), a person
    confirms, and it finishes — with no sandbox and only the built-in actions."""
    out = outcomes["demo"]
    assert out.first_exit == 3
    succeeded(out)
    assert out.states()["payment-network"] == "Succeeded"
    assert len(out.result("service-config")) == 4
    assert out.result("sign-off-the-smoke-test")["attested_by"] == "ops-lead"
    record = json.loads((out.root / ".opsbook/demo/smoke-test.json").read_text())
    assert record["result"] == "passed" and record["service"] == "payment"


def test_the_approval_demo_changes_only_after_a_second_person_approves(
    outcomes: dict[str, Outcome],
) -> None:
    out = outcomes["approval-demo"]
    succeeded(out)
    approvers = out.result("a-second-person-approves")["approved_by"]
    assert approvers and out.execution["started_by"] not in approvers
    change = json.loads((out.root / ".opsbook/demo/change.json").read_text())
    assert change["approved_by"] == approvers
