"""``incidents.classify``: the workspace's incident policy (a real `opsbook init` workspace's
incident_policy.yaml) classifies impact x urgency, its rules raise the severity, an unbalanced
ledger is SEV-1; bad arguments are validation errors naming the argument."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from opsbook.actions import ActionContext, load_registry
from opsbook.errors import OpsbookError, ValidationError
from opsbook.workspace.init import init_workspace


@pytest.fixture(scope="module")
def bank(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("incidents-actions") / "bank"
    init_workspace(target=root)
    return root


async def classify(workspace: Path, *, dry_run: bool = False, **args: Any) -> Any:
    context = ActionContext("sandbox", {}, workspace, "e1", "alice", dry_run=dry_run)
    return await load_registry().get("incidents.classify").func(context, args)


def test_it_is_registered_with_dry_run_support() -> None:
    spec = load_registry().get("incidents.classify")
    assert spec.supports_dry_run
    assert spec.required == ("impact", "urgency")


async def test_the_matrix_gives_the_severity_and_what_it_calls_for(bank: Path) -> None:
    result = await classify(bank, impact="significant", urgency="high", ledger_total="0")
    assert result == {
        "severity": "SEV-2",
        "policy_severity": "SEV2",
        "major": True,
        "type": "other",
        "services": [],
        "update_interval": "1h",
        "ack_target": "15m",
        "page": ["level-1"],
        "reasons": ["significant impact × high urgency → SEV2"],
    }


async def test_a_minor_incident_is_not_major(bank: Path) -> None:
    result = await classify(bank, impact="minor", urgency="low", ledger_total=0)
    assert (result["severity"], result["major"]) == ("SEV-4", False)


async def test_a_security_incident_is_at_least_sev2(bank: Path) -> None:
    result = await classify(
        bank, impact="moderate", urgency="medium", type="security", ledger_total=0
    )
    assert result["severity"] == "SEV-2"
    assert result["reasons"][-1] == "a security incident is at least SEV2 → at least SEV2"


async def test_a_service_rule_applies_to_the_named_services(bank: Path) -> None:
    result = await classify(
        bank, impact="significant", urgency="medium", services=["payment"], ledger_total=0
    )
    assert result["severity"] == "SEV-1"
    assert result["page"] == ["level-1", "level-2", "level-3"]


async def test_an_unbalanced_ledger_is_sev1(bank: Path) -> None:
    result = await classify(bank, impact="minor", urgency="low", ledger_total="-500")
    assert (result["severity"], result["major"]) == ("SEV-1", True)
    assert result["reasons"][-1] == "ledger out of balance by -500 cents → SEV1"


async def test_an_unchecked_ledger_is_said(bank: Path) -> None:
    result = await classify(bank, impact="minor", urgency="low", ledger_total="unknown")
    assert result["severity"] == "SEV-4"
    assert result["reasons"][-1] == "ledger not checked: the database did not answer"


async def test_a_dry_run_classifies_too(bank: Path) -> None:
    result = await classify(bank, dry_run=True, impact="extensive", urgency="critical")
    assert result["severity"] == "SEV-1"


async def test_a_dry_run_names_the_ledger_check_it_did_not_run(bank: Path) -> None:
    placeholder = "<result of step ledger.rows.0.total>"
    result = await classify(
        bank, dry_run=True, impact="minor", urgency="low", ledger_total=placeholder
    )
    assert result["severity"] == "SEV-4"
    assert result["reasons"][-1] == f"ledger: {placeholder} (dry run: SEV1 if it is not 0)"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"impact": "huge", "urgency": "high"}, "impact must be one of extensive"),
        ({"impact": "minor", "urgency": ""}, "urgency must be one of critical"),
        ({"impact": "minor", "urgency": "low", "type": "alien"}, "type must be one of outage"),
        ({"impact": "minor", "urgency": "low", "services": [1]}, "services must be a list"),
        ({"impact": "minor", "urgency": "low", "ledger_total": "lots"}, "ledger_total must be"),
    ],
)
async def test_bad_arguments_are_validation_errors(
    bank: Path, args: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        await classify(bank, **args)


async def test_a_workspace_without_a_policy_is_an_error_naming_the_file(tmp_path: Path) -> None:
    root = tmp_path / "bank"
    init_workspace(target=root)
    (root / "incident_policy.yaml").unlink()
    with pytest.raises(OpsbookError, match=r"incident_policy\.yaml"):
        await classify(root, impact="minor", urgency="low")
