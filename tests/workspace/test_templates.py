"""The banking runbooks `opsbook init` writes: they parse, pass lint, hold the seed's procedures,
and every step's templates render against both environments."""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from opsbook.engine.templating import render, render_value
from opsbook.expressions import evaluate
from opsbook.runbooks.catalogue import load_catalogue
from opsbook.runbooks.lint import format_finding, lint_paths
from opsbook.runbooks.model import Procedure, Runbook, StepKind
from opsbook.runbooks.params import validate_params
from opsbook.runbooks.parser import parse_file
from opsbook.workspace import Workspace, load_environment
from opsbook.workspace.init import template_files
from tests.workspace.conftest import EXAMPLE_PARAMS

TODAY = date(2026, 11, 26)
RUNBOOKS = [
    str(rel) for rel, _ in template_files() if re.fullmatch(r"runbooks/\d\d_.*\.md", str(rel))
]

SEED_PROCEDURES = {
    "demo": ["smoke-test", "approval-demo", "retry-demo"],
    "system-monitoring": [
        "morning-health-check",
        "kpi-monitoring",
        "performance-troubleshooting",
        "escalation",
    ],
    "incident-response": [
        "incident-classification",
        "response-team-activation",
        "investigation",
        "post-incident-review",
    ],
    "deployment-procedures": [
        "pre-deployment-checklist",
        "release",
        "blue-green-deployment",
        "database-migration",
        "emergency-rollback",
    ],
    "troubleshooting": [
        "service-connectivity",
        "performance-investigation",
        "database-connectivity",
        "infrastructure",
        # the fixing procedures diagnosis names, and the escalation decision tree (issue 12)
        "restart-service",
        "roll-back-release",
        "slow-service",
        "error-spike",
        "database-path",
        "connection-pool",
        "payment-network",
        "disk-space",
        "certificate-renewal",
        "credential-stuffing",
        "escalation-decision",
    ],
    "backup-recovery": [
        "backup-verification",
        "point-in-time-recovery",
        "dr-activation",
        "dr-test",
    ],
    "security-operations": [
        "daily-security-checks",
        "vulnerability-management",
        "incident-containment",
        "access-review",
    ],
    "opsbook-cluster": ["worker-lost", "replica-lost"],
}
HIGH_RISK = {
    "demo#approval-demo",
    "deployment-procedures#release",
    "deployment-procedures#blue-green-deployment",
    "deployment-procedures#database-migration",
    "deployment-procedures#emergency-rollback",
    "backup-recovery#point-in-time-recovery",
    "backup-recovery#dr-activation",
    "security-operations#incident-containment",
}
ACTIONS = {
    "platform.status",
    "platform.health",
    "platform.restart",
    "platform.scale",
    "platform.rollback",
    "platform.logs",
    "platform.top",
    "platform.latency",
    "incidents.classify",
    "core.echo",
    "core.sleep",
    "troubleshoot.diagnose",
    "platform.remediate",
    "security.check",
    "security.scan",
    "security.sbom",
    "security.access_review",
    "security.forensic_snapshot",
    "security.revoke_access",
    "security.restore_access",
    "platform.isolate",
    "platform.release",
    "platform.freeze_account",
    "platform.unfreeze_account",
    "backup.take",
    "backup.prune",
    "backup.check",
    "backup.recover_prepare",
    "backup.recover_cutover",
    "azure.sql_restore",
    "azure.sql_failover",
    "dr.setup",
    "dr.failover",
    "dr.failback",
    "deploy.begin",
    "deploy.rollout",
    "deploy.rollback",
    "deploy.release_info",
    "deploy.lint_migration",
    "deploy.migrate",
    "cluster.status",
}


FIXING_PROCEDURES = (
    "restart-service",
    "roll-back-release",
    "slow-service",
    "error-spike",
    "database-path",
    "connection-pool",
    "payment-network",
    "disk-space",
    "certificate-renewal",
    "credential-stuffing",
)


def procedures(root: Path) -> list[tuple[Runbook, Procedure]]:
    return [(rb, p) for rb in load_catalogue(root / "runbooks").runbooks for p in rb.procedures]


@pytest.mark.parametrize("name", RUNBOOKS)
def test_every_runbook_parses(workspace_root: Path, name: str) -> None:
    rb = parse_file(workspace_root / name)
    assert rb.meta.owner and rb.meta.purpose
    assert rb.meta.review_interval in ("30d", "90d")
    assert rb.meta.last_reviewed in ("2026-11-20", "2026-12-04")
    assert rb.meta.use_cases and rb.meta.tags
    if rb.id == "opsbook-cluster":  # about opsbook itself, not the bank's services
        assert rb.meta.services == ()
    else:
        assert rb.meta.services == ("account", "transaction", "payment", "notification")
    assert rb.procedures


def test_lint_finds_no_errors(workspace_root: Path) -> None:
    findings = lint_paths([workspace_root / "runbooks"], today=TODAY)
    errors = [format_finding(f) for f in findings if f.severity == "error"]
    assert errors == []


def test_lint_finds_nothing_at_all(workspace_root: Path) -> None:
    """The shipped workspace is the example of the documentation standards: no warnings."""
    findings = lint_paths([workspace_root / "runbooks"], today=TODAY)
    assert [format_finding(f) for f in findings] == []


def test_lint_reports_reviews_overdue_after_their_interval(workspace_root: Path) -> None:
    later = lint_paths([workspace_root / "runbooks"], today=date(2027, 1, 1))
    overdue = {f.path.name for f in later if f.code == "OB107"}
    # 30-day runbooks are overdue by January; 90-day ones are not yet.
    assert overdue == {"01_system_monitoring.md", "06_security_operations.md"}


def test_the_catalogue_holds_the_seed_procedures(workspace_root: Path) -> None:
    catalogue = load_catalogue(workspace_root / "runbooks")
    found = {rb.id: [p.id for p in rb.procedures] for rb in catalogue.runbooks}
    assert found == SEED_PROCEDURES
    assert [rb.path.name for rb in catalogue.runbooks] == [Path(n).name for n in RUNBOOKS]


def test_procedures_document_what_the_standards_ask(workspace_root: Path) -> None:
    for rb, proc in procedures(workspace_root):
        ref = f"{rb.id}#{proc.id}"
        assert proc.when_to_use, ref
        assert proc.permissions and proc.prerequisites and proc.environments, ref
        assert proc.troubleshooting, f"{ref} has no Troubleshooting section"
        manual = any(s.kind is StepKind.MANUAL and s.checklist for s in proc.steps)
        # kpi-monitoring runs every 15 minutes: a manual step would park every run (OB114);
        # the fixing procedures run as children of the decision trees, which record the outcome
        automatic = {"system-monitoring#kpi-monitoring"} | {
            f"troubleshooting#{p}" for p in FIXING_PROCEDURES
        }
        assert manual == (ref not in automatic), ref
        assert proc.risk == ("high" if ref in HIGH_RISK else proc.risk), ref
        assert (proc.risk == "high") == (ref in HIGH_RISK), ref
        for step in proc.steps:
            if step.kind in (StepKind.SH, StepKind.HTTP, StepKind.SQL, StepKind.ACTION):
                assert step.expectations, f"{ref} step {step.id} has no expect block"
            if step.kind is StepKind.ACTION:
                assert step.action_name in ACTIONS, f"{ref} step {step.id}: {step.action_name}"


def test_high_risk_procedures_are_approved_before_any_change(workspace_root: Path) -> None:
    for rb, proc in procedures(workspace_root):
        if proc.risk != "high":
            continue
        kinds = [s.kind for s in proc.steps]
        assert StepKind.APPROVAL in kinds, proc.id
        first_change = next(i for i, s in enumerate(proc.steps) if s.changes_state)
        assert kinds.index(StepKind.APPROVAL) < first_change, f"{rb.id}#{proc.id}"


def test_the_blue_green_deployment_needs_an_approver(workspace_root: Path) -> None:
    _, proc = load_catalogue(workspace_root / "runbooks").resolve(
        "deployment-procedures#blue-green-deployment"
    )
    approval = next(s for s in proc.steps if s.kind is StepKind.APPROVAL)
    assert approval.approval is not None and approval.approval.roles == ("approver",)


def test_the_common_commands_are_steps(workspace_root: Path) -> None:
    """Each of the quick reference's common commands is a platform action in a procedure."""
    used: dict[str, set[str]] = {}
    for rb, proc in procedures(workspace_root):
        for step in proc.steps:
            if step.action_name:
                used.setdefault(step.action_name, set()).add(f"{rb.id}#{proc.id}")
    assert "system-monitoring#morning-health-check" in used["platform.status"]  # all services
    assert "troubleshooting#service-connectivity" in used["platform.health"]  # service health
    assert "troubleshooting#performance-investigation" in used["platform.top"]  # resources
    assert "troubleshooting#service-connectivity" in used["platform.restart"]  # restart
    assert "troubleshooting#performance-investigation" in used["platform.scale"]  # scaling
    assert "deployment-procedures#emergency-rollback" in used["deploy.rollback"]  # rollback


def test_the_service_connectivity_decision_tree(workspace_root: Path) -> None:
    _, proc = load_catalogue(workspace_root / "runbooks").resolve(
        "troubleshooting#service-connectivity"
    )
    ids = [s.id for s in proc.steps]
    # issue 12: diagnose first, run the fixing procedure a cause names, else check by hand
    assert ids[:5] == [
        "diagnose",
        "fix-what-the-diagnosis-found",
        "check-health",
        "is-the-service-down",
        "restart-service",
    ]
    fix = proc.steps[1].decide
    assert fix[0].run == "troubleshooting#restart-service" and '"crash"' in (fix[0].condition or "")
    assert fix[-1].condition is None and fix[-1].goto == "check-health"
    down = proc.steps[3].decide
    assert down[0].goto == "restart-service" and "DOWN" in (down[0].condition or "")
    assert down[-1].condition is None and down[-1].goto == "check-dependencies"


def test_the_readme_indexes_every_procedure(workspace_root: Path) -> None:
    readme = (workspace_root / "runbooks" / "README.md").read_text(encoding="utf-8")
    for rb, proc in procedures(workspace_root):
        assert f"`{rb.id}#{proc.id}`" in readme
        assert f"./{rb.path.name}" in readme
    assert "--env sandbox" in readme


def _context(env: dict[str, Any], params: dict[str, object]) -> dict[str, Any]:
    execution = {"id": "abc123", "started_by": "ops-lead", "environment": env["name"]}
    return {"params": params, "env": env, "steps": {}, "item": None, "execution": execution}


def _needs_earlier_results(text: str) -> bool:
    return "steps." in text or "steps[" in text


@pytest.mark.parametrize("environment", ["sandbox", "production"])
def test_every_step_renders_in_both_environments(workspace_root: Path, environment: str) -> None:
    """Templates and `when`/`for_each` conditions use only keys both environment files have."""
    ws = Workspace.load(workspace_root)
    env = dict(load_environment(ws, environment).data)
    rendered = 0
    for rb, proc in procedures(workspace_root):
        ref = f"{rb.id}#{proc.id}"
        if proc.environments and environment not in proc.environments:
            continue
        params = validate_params(proc, EXAMPLE_PARAMS.get(ref, {}))
        context = _context(env, params)
        for step in proc.steps:
            if step.block is None or step.kind in (StepKind.APPROVAL, StepKind.DECIDE):
                continue
            when = step.options.when
            if when and (_needs_earlier_results(when) or not evaluate(when, context)):
                continue
            items: list[Any] = [None]
            if step.options.for_each:
                items = list(evaluate(step.options.for_each, context))
                assert items, f"{ref} {step.id}: for_each is empty"
            if _needs_earlier_results(step.block.body):
                continue
            for item in items:
                ctx = {**context, "item": item}
                if step.kind is StepKind.ACTION:
                    args = render_value(dict(step.action_args), context=ctx, secrets=None)
                    assert "{{" not in str(args), f"{ref} {step.id}"
                else:
                    text = render(step.block.body, context=ctx, kind=step.kind, secrets=None)
                    assert "{{ " not in text, f"{ref} {step.id}: {text}"
                rendered += 1
    assert rendered > 40
