"""Deployments on the real sandbox through the real CLI (`opsbook deploy`, `opsbook run`,
`opsbook releases`): each strategy, the automated rollback of the release that fails payments
while customer traffic runs, the refusals (freeze window, overlap, no evidence, unknown
version), the emergency rollback on a fresh sandbox, and the change record."""

from __future__ import annotations

import json
from typing import Any

import pytest

from opsbook.sandbox import lifecycle
from opsbook.workspace import Workspace
from tests.deploy.conftest import Deployer, Payments, step_result
from tests.workspace.drive import failed_steps

pytestmark = pytest.mark.slow


def running(ws: Workspace, service: str) -> dict[str, Any]:
    status = lifecycle.status(workspace=ws)
    return next(s for s in status["services"] if s["name"] == service)


def checklist(d: Deployer, service: str, version: str) -> str:
    out = d.run(
        "deployment-procedures#pre-deployment-checklist",
        {"service": service, "version": version},
    )
    assert out["state"] == "succeeded", failed_steps(out)
    return str(out["id"])


def deploy_args(service: str, version: str, strategy: str, ticket: str = "CHG-100") -> list[str]:
    return [
        service,
        version,
        "--strategy",
        strategy,
        "--ticket",
        ticket,
        "--reason",
        f"ship {version}",
        "--security-impact",
        "none",
    ]


def test_emergency_rollback_works_on_a_fresh_sandbox(bank: Workspace, deployer: Deployer) -> None:
    """Issue 11's defect: a fresh sandbox had no earlier revision to roll back to."""
    assert running(bank, "transaction")["revision"] == 2
    out = deployer.run(
        "deployment-procedures#emergency-rollback", {"service": "transaction", "ticket": "INC-1"}
    )
    assert out["state"] == "succeeded", failed_steps(out)
    rolled = step_result(out, "rollback")
    assert rolled["rolled_back_from"] == 2 and rolled["version"] == "1.4.1"
    assert running(bank, "transaction")["version"] == "1.4.1"


def test_a_good_canary_is_promoted_and_leaves_a_change_record(
    bank: Workspace, deployer: Deployer
) -> None:
    evidence = checklist(deployer, "payment", "1.5.0")
    with Payments(running(bank, "payment")["url"]) as traffic:
        code, out = deployer.deploy(*deploy_args("payment", "1.5.0", "canary"))
    assert code == 0 and isinstance(out, dict)
    assert out["state"] == "succeeded", failed_steps(out)
    assert traffic.failed == 0 and traffic.sent > 50
    result = step_result(out, "rollout")
    assert result["outcome"] == "promoted"
    kinds = [d["kind"] for d in result["decisions"]]
    assert kinds[0] == "started" and "weight" in kinds and kinds[-1] == "promoted"
    measured = [d for d in result["decisions"] if d["kind"] == "measurement"]
    assert measured and all(m["verdict"] in ("successful", "inconclusive") for m in measured)
    assert {"value", "condition", "verdict"} <= set(measured[0])
    svc = running(bank, "payment")
    assert svc["version"] == "1.5.0" and svc["standby"]["version"] == "1.4.2"  # kept a while
    rel = deployer.releases()[0]
    assert rel["state"] == "promoted" and rel["version"] == "1.5.0"
    record = deployer.record(rel["id"])
    assert record["ticket"] == "CHG-100" and record["reason"] == "ship 1.5.0"
    assert record["security_impact"] == "none" and "rollback" in record["backout"]
    assert [e["execution_id"] for e in record["testing_evidence"]["checklist"]] == [evidence]
    assert record["approvals"] and record["approvals"][0]["approver"] != record["requested_by"]
    assert record["executions"][0]["id"] == out["id"]
    assert any(d["kind"] == "analysis" for d in record["decisions"])


def test_a_canary_of_the_release_that_fails_payments_is_aborted_without_a_person(
    bank: Workspace, deployer: Deployer
) -> None:
    checklist(deployer, "payment", "1.5.2")
    before = running(bank, "payment")["version"]
    with Payments(running(bank, "payment")["url"]) as traffic:
        code, out = deployer.deploy(*deploy_args("payment", "1.5.2", "canary", "CHG-101"))
    assert code == 0 and isinstance(out, dict)
    assert out["state"] == "failed"  # the rollout step's expectation: not promoted
    result = step_result(out, "rollout")
    assert result["outcome"] == "aborted" and "analysis failed" in result["reason"]
    failed = [
        d for d in result["decisions"] if d["kind"] == "measurement" and d["verdict"] == "failed"
    ]
    assert len(failed) >= 2 and all(f["value"] > 0.02 for f in failed)
    aborted = next(d for d in result["decisions"] if d["kind"] == "aborted")
    assert aborted["seconds_since_first_traffic"] < 60
    svc = running(bank, "payment")
    assert svc["version"] == before and svc["standby"] is None  # all traffic back, canary gone
    assert traffic.failed < traffic.sent * 0.05
    rel = deployer.releases()[0]
    assert rel["version"] == "1.5.2" and rel["state"] == "aborted"


def test_rolling_and_blue_green_deployments_of_a_good_release_lose_no_request(
    bank: Workspace, deployer: Deployer
) -> None:
    checklist(deployer, "account", "1.5.0")
    checklist(deployer, "notification", "1.5.0")
    with Payments(running(bank, "payment")["url"], rate=10) as traffic:
        code, rolled = deployer.deploy(*deploy_args("account", "1.5.0", "rolling", "CHG-102"))
        assert code == 0 and isinstance(rolled, dict)
        assert rolled["state"] == "succeeded", failed_steps(rolled)
        code, switched = deployer.deploy(
            *deploy_args("notification", "1.5.0", "blue-green", "CHG-103")
        )
        assert code == 0 and isinstance(switched, dict)
        assert switched["state"] == "succeeded", failed_steps(switched)
    assert traffic.failed == 0
    assert running(bank, "account")["version"] == "1.5.0"
    assert running(bank, "notification")["version"] == "1.5.0"
    assert step_result(switched, "rollout")["strategy"] == "blue-green"


def test_refusals_change_nothing(bank: Workspace, deployer: Deployer) -> None:
    before = running(bank, "payment")
    code, text = deployer.deploy(*deploy_args("payment", "9.9.9", "canary"))
    assert code == 2 and "no release '9.9.9'" in str(text)
    code, text = deployer.deploy(*deploy_args("ledger", "1.5.0", "canary"))
    assert code == 2 and "no service 'ledger'" in str(text)
    code, text = deployer.deploy(*deploy_args("payment", "1.5.0", "sideways"))
    assert code == 2 and "--strategy must be one of" in str(text)
    # no testing evidence for 1.5.1: the procedure's first step refuses and records it
    code, out = deployer.deploy(*deploy_args("payment", "1.5.1", "canary", "CHG-104"))
    assert code == 0 and isinstance(out, dict) and out["state"] == "failed"
    assert "no testing evidence" in json.dumps(failed_steps(out))
    assert deployer.releases()[0]["state"] == "refused"
    # an analysis query that does not parse: refused before anything starts, with file:line
    config = bank.root / "deployments.yaml"
    good = config.read_text(encoding="utf-8")
    config.write_text(
        good.replace(
            "provider: sandbox\n        query: error_ratio",
            "provider: prometheus\n        query: sum(rate(x[1m])",
        ),
        encoding="utf-8",
    )
    try:
        code, text = deployer.deploy(*deploy_args("payment", "1.5.0", "canary", "CHG-109"))
    finally:
        config.write_text(good, encoding="utf-8")
    assert code == 2 and "deployments.yaml:" in str(text)
    after = running(bank, "payment")
    assert (after["version"], after["revision"]) == (before["version"], before["revision"])


def test_a_deployment_in_a_freeze_window_is_refused_unless_emergency(
    bank: Workspace, deployer: Deployer
) -> None:
    calendar = bank.root / "change_calendar.yaml"
    calendar.write_text(
        "freezes:\n  - name: test freeze\n    reason: testing\n    days: daily\n"
        '    start: "00:00"\n    end: "24:00"\n',
        encoding="utf-8",
    )
    try:
        before = running(bank, "transaction")
        code, text = deployer.deploy(*deploy_args("transaction", "1.5.0", "canary", "CHG-105"))
        assert code == 2 and "inside the change freeze test freeze" in str(text)
        assert running(bank, "transaction")["revision"] == before["revision"]
        checklist(deployer, "transaction", "1.5.0")
        code, out = deployer.deploy(
            *deploy_args("transaction", "1.5.0", "canary", "CHG-106"), "--emergency"
        )
        assert code == 0 and isinstance(out, dict)
        assert out["state"] == "succeeded", failed_steps(out)
        approvals = [s for s in out["steps"] if s["kind"] == "approval"]
        assert len([s for s in approvals if s["state_name"] == "Succeeded"]) == 2
        record = deployer.record(deployer.releases()[0]["id"])
        assert record["emergency"] is True and record["freeze"][0]["name"] == "test freeze"
        calendar.write_text("freezes:\n  - name: broken\n    days: someday\n", encoding="utf-8")
        code, text = deployer.deploy(*deploy_args("transaction", "1.5.0", "canary", "CHG-107"))
        assert code == 2 and "change_calendar.yaml:3" in str(text)
    finally:
        calendar.unlink()


def test_a_release_needing_a_schema_change_waits_for_its_migration(
    bank: Workspace, deployer: Deployer
) -> None:
    """1.6.0 needs accounts.display_name: refused (named) before the migration, which the
    runbook's procedure then lints, backs up, applies with timeouts and checks; then it runs."""
    checklist(deployer, "account", "1.6.0")
    before = running(bank, "account")
    code, out = deployer.deploy(*deploy_args("account", "1.6.0", "canary", "CHG-110"))
    assert code == 0 and isinstance(out, dict) and out["state"] == "failed"
    assert "accounts.display_name" in json.dumps(failed_steps(out))
    assert running(bank, "account")["version"] == before["version"]  # nothing took traffic
    assert deployer.releases()[0]["state"] == "failed"
    migrated = deployer.run("deployment-procedures#database-migration", {"ticket": "CHG-111"})
    assert migrated["state"] == "succeeded", failed_steps(migrated)
    applied = step_result(migrated, "migrate")
    assert applied["invariants_ok"] is True
    assert step_result(migrated, "lint")["errors"] == 0
    code, out = deployer.deploy(*deploy_args("account", "1.6.0", "rolling", "CHG-112"))
    assert code == 0 and isinstance(out, dict)
    assert out["state"] == "succeeded", failed_steps(out)
    assert running(bank, "account")["version"] == "1.6.0"


def test_a_second_deployment_of_a_service_in_progress_is_refused_naming_the_first(
    bank: Workspace, deployer: Deployer
) -> None:
    import threading

    checklist(deployer, "notification", "1.5.1")
    result: dict[str, Any] = {}
    first = threading.Thread(
        target=lambda: result.update(
            zip(
                ("code", "out"),
                deployer.deploy(*deploy_args("notification", "1.5.1", "canary", "CHG-120")),
                strict=True,
            )
        )
    )
    first.start()
    try:
        held = None
        for _ in range(600):  # until the first one's change record is open
            rows = [r for r in deployer.releases() if r["ticket"] == "CHG-120"]
            if rows and rows[0]["state"] == "running":
                held = rows[0]
                break
            first.join(0.1)
        assert held is not None, "the first deployment never opened its change record"
        code, text = Deployer(bank.root, fake_platform=False).deploy(
            *deploy_args("notification", "1.5.0", "canary", "CHG-121")
        )
        assert code == 2 and f"release {held['id']}" in str(text) and "CHG-120" in str(text)
    finally:
        first.join(120)
    assert result["code"] == 0 and result["out"]["state"] in ("succeeded", "failed")
    assert not [r for r in deployer.releases() if r["ticket"] == "CHG-121"]  # nothing recorded


def test_the_emergency_rollback_marks_the_release_a_change_failure(
    bank: Workspace, deployer: Deployer
) -> None:
    promoted = [r for r in deployer.releases() if r["state"] == "promoted"]
    target = next(r for r in promoted if r["service"] == running(bank, "payment")["name"])
    assert running(bank, "payment")["version"] == target["version"]
    out = deployer.run(
        "deployment-procedures#emergency-rollback", {"service": "payment", "ticket": "INC-42"}
    )
    assert out["state"] == "succeeded", failed_steps(out)
    record = deployer.record(target["id"])
    assert record["outcome"] == "rolled_back" and record["incidents"] == ["INC-42"]
    assert [e["id"] for e in record["executions"]][-1] == out["id"]
    dora = json.loads(deployer.ob("releases", "dora", "--json").stdout)
    assert dora["deployment_frequency"]["deployments"] >= 3
    assert target["id"] in dora["change_failure_rate"]["releases"]
    assert dora["change_failure_rate"]["failures"] >= 1
    calendar = deployer.ob("releases", "calendar", "--json")
    assert calendar.returncode == 0 and json.loads(calendar.stdout)["active"] == []


def test_the_change_records_are_in_the_compliance_evidence_and_the_audit_export(
    bank: Workspace, deployer: Deployer, tmp_path: Any
) -> None:
    from datetime import UTC, datetime

    now = datetime.now(UTC)
    quarter = f"{now.year}-Q{(now.month - 1) // 3 + 1}"
    pack = tmp_path / "pack"
    done = deployer.ob(
        "compliance",
        "report",
        "--standard",
        "pci-dss-4.0.1",
        "--period",
        quarter,
        "--requirement",
        "6.5.1",
        "--out",
        str(pack),
        "--as",
        "eng-manager",
    )
    assert done.returncode in (0, 1), done.stdout + done.stderr
    report = json.loads((pack / "compliance.json").read_text())
    item = next(r for r in report["requirements"] if r["requirement"] == "6.5.1")
    assert item["status"] == "evidence"
    records = {c["release"]: c for c in item["change_records"]}
    ours = {r["id"] for r in deployer.releases() if r["environment"] == "sandbox"}
    assert ours <= set(records)  # every production-tier release, refused ones included
    promoted = next(c for c in records.values() if c["outcome"] in ("promoted", "rolled_back"))
    assert promoted["approvals"] and promoted["testing_evidence"]["checklist"]
    assert promoted["audit_records"]
    assert "6.5.1" in (pack / "COMPLIANCE.md").read_text()
    out = tmp_path / "evidence"
    exported = deployer.ob("audit", "export", "--out", str(out))
    assert exported.returncode == 0, exported.stderr
    lines = (out / "events.jsonl").read_text(encoding="utf-8").splitlines()
    actions = {json.loads(line)["action"] for line in lines}
    assert {
        "release.started",
        "release.promoted",
        "release.aborted",
        "release.refused",
        "release.rolled_back",
    } <= actions
