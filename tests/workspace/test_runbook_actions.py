"""The shipped procedures whose inline-Python steps became action steps (``platform.*``,
``incidents.classify``; issue 18 §6) still work for real: a fresh `opsbook init` workspace on
free ports, the real sandbox (`opsbook.sandbox.lifecycle.up`), faults injected through
`opsbook.sandbox.chaos`, and each procedure driven to its end through the real CLI (a person
confirms manual steps, other people approve). The built-in actions only: no fake platform.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from opsbook.sandbox import chaos, lifecycle
from opsbook.sandbox.config import free_ports
from opsbook.workspace import Workspace
from opsbook.workspace.init import init_workspace
from tests.workspace.conftest import EXAMPLE_PARAMS
from tests.workspace.drive import Driver, failed_steps

pytestmark = pytest.mark.slow

ACTOR = "test-runbook-actions"


@pytest.fixture(scope="module")
def bank(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workspace]:
    """`opsbook init`'s workspace with its sandbox moved to free ports (18100-18105 in the
    shipped file), started for the module and stopped at the end."""
    root = tmp_path_factory.mktemp("runbook-actions") / "bank"
    init_workspace(target=root)
    env_file = root / "environments" / "sandbox.yaml"
    ports = free_ports(6)
    text = re.sub(r"\b1810([0-5])\b", lambda m: str(ports[int(m.group(1))]), env_file.read_text())
    env_file.write_text(text, encoding="utf-8")
    ws = Workspace.load(root)
    lifecycle.up(workspace=ws)
    try:
        yield ws
    finally:
        lifecycle.down(workspace=ws)


def run(ws: Workspace, ref: str, **params: str) -> dict[str, Any]:
    execution = Driver(ws.root, fake_platform=False).run(
        ref, {**EXAMPLE_PARAMS.get(ref, {}), **params}
    )
    assert execution["state"] == "succeeded", failed_steps(execution)
    return execution


def states(execution: dict[str, Any]) -> dict[str, str]:
    return {s["step"]: s["state_name"] for s in execution["steps"]}


def action_result(execution: dict[str, Any], step: str) -> Any:
    stored = next(s["result"] for s in execution["steps"] if s["step"] == step)
    return stored["fields"]["result"]


def inject(ws: Workspace, fault: str, service: str | None = None) -> None:
    chaos.inject(control=lifecycle.control(workspace=ws), fault=fault, service=service, actor=ACTOR)


def test_incident_classification_uses_the_workspace_policy(bank: Workspace) -> None:
    out = run(
        bank,
        "incident-response#incident-classification",
        impact="moderate",
        urgency="medium",
        security_incident="true",
    )
    classified = action_result(out, "classify")
    assert (classified["severity"], classified["major"]) == ("SEV-2", True)
    assert classified["reasons"][-1] == "a security incident is at least SEV2 → at least SEV2"
    assert states(out)["declare-a-major-incident"] == "Succeeded"


def test_performance_troubleshooting_measures_with_platform_latency(bank: Workspace) -> None:
    out = run(bank, "system-monitoring#performance-troubleshooting", latency_budget_ms="10000")
    measured = action_result(out, "measure")
    assert measured["service"] == "payment"
    assert (measured["status"], measured["samples"], measured["up"]) == ("UP", 10, 10)
    assert measured["max_ms"] <= 10000
    assert states(out)["record-the-findings"] == "Succeeded"


def test_performance_investigation_scales_out_a_service_that_does_not_answer(
    bank: Workspace,
) -> None:
    inject(bank, "crash", "payment")  # not answering counts as over budget
    try:
        out = run(bank, "troubleshooting#performance-investigation")
    finally:  # scaling out starts new replicas but does not end the fault
        chaos.clear(control=lifecycle.control(workspace=bank), fault="crash", actor=ACTOR)
    measured = action_result(out, "measure")
    assert (measured["status"], measured["up"]) == ("DOWN", 0)
    assert states(out)["scale-out"] == "Succeeded"
    again = action_result(out, "measure-again")
    assert (again["status"], again["samples"], again["up"]) == ("UP", 10, 10)


def test_service_connectivity_restarts_a_crashed_service_and_verifies_it(
    bank: Workspace,
) -> None:
    inject(bank, "crash", "payment")
    out = run(bank, "troubleshooting#service-connectivity")
    # the tree diagnoses first and runs the fixing procedure the diagnosis names (issue 12)
    assert action_result(out, "diagnose")["top"]["cause"] == "crash"
    branch = next(s["result"] for s in out["steps"] if s["step"] == "fix-what-the-diagnosis-found")
    assert branch["run"] == "troubleshooting#restart-service"
    assert branch["child_state"] == "succeeded"
    # then the checks confirm it: the service answers, nothing is restarted twice
    assert action_result(out, "check-health")["healthy"] is True
    assert "restart-service" not in states(out)


def test_blue_green_deployment_verifies_the_service_with_platform_health(
    bank: Workspace,
) -> None:
    (bank.root / "change_calendar.yaml").write_text("freezes: []\n")  # any hour
    run(bank, "deployment-procedures#pre-deployment-checklist")  # the testing evidence
    out = run(bank, "deployment-procedures#blue-green-deployment")
    assert states(out)["deploy-sandbox"] == "Succeeded"
    assert action_result(out, "deploy-sandbox")["outcome"] == "promoted"
    verified = action_result(out, "verify")
    assert verified["healthy"] is True
    assert [s["name"] for s in verified["services"]] == ["payment"]


def test_emergency_rollback_after_a_bad_deploy_verifies_the_service(bank: Workspace) -> None:
    inject(bank, "bad-deploy", "payment")
    out = run(bank, "deployment-procedures#emergency-rollback")
    assert states(out)["rollback"] == "Succeeded"
    assert action_result(out, "verify")["services"][0]["status"] == "UP"


def test_infrastructure_reads_the_payment_network_from_the_payment_health_check(
    bank: Workspace,
) -> None:
    out = run(bank, "troubleshooting#infrastructure")
    payment = action_result(out, "payment-network")["services"]
    assert [s["name"] for s in payment] == ["payment"]
    assert payment[0]["checks"]["dependencies"] == "UP"


def test_incident_containment_isolates_then_brings_everything_back(bank: Workspace) -> None:
    out = run(bank, "security-operations#incident-containment")
    snapshot = action_result(out, "snapshot")
    assert {"notification.log", "processes.json", "ledger.db"} <= set(snapshot["files"])
    isolated = action_result(out, "isolated")["services"]
    assert [s["name"] for s in isolated] == ["notification"]
    assert isolated[0]["status"] != "UP"
    assert action_result(out, "freeze")["changed"] is True
    assert action_result(out, "revoke-access")["platform_account_disabled"] is True
    # the reverses, after the investigation's approval
    assert action_result(out, "release")["changed"] is True
    assert action_result(out, "unfreeze")["changed"] is True
    assert action_result(out, "restore-access")["platform_account_enabled"] is True
    assert action_result(out, "answers-again")["services"][0]["status"] == "UP"
