"""The classification matrix and contacts: the banking default and clear file:line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from opsbook.errors import ValidationError
from opsbook.incidents.config import load_config
from opsbook.workspace import Workspace
from opsbook.workspace.init import init_workspace
from tests.incidents.harness import contacts_yaml


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    init_workspace(target=tmp_path / "ws")
    return Workspace.load(tmp_path / "ws")


def test_the_banking_default_classifies_payments_unavailable_as_sev1(ws: Workspace) -> None:
    policy = load_config(ws).policy
    c = policy.classify(impact="significant", urgency="high", type_="outage", services=("payment",))
    assert c.severity == "SEV1"
    assert any("payments unavailable" in r for r in c.reasons)
    assert (
        policy.classify(
            impact="significant", urgency="high", type_="outage", services=("account",)
        ).severity
        == "SEV2"
    )
    assert (
        policy.classify(impact="minor", urgency="low", type_="security", services=()).severity
        == "SEV2"
    )
    assert policy.severity("SEV1").ack_target == 300
    assert policy.severity("SEV2").update_every == 3600
    assert set(policy.services) == {"account", "transaction", "payment", "notification"}


def test_the_default_contacts_page_along_the_seed_levels(ws: Workspace) -> None:
    contacts = load_config(ws).contacts
    assert [lv.name for lv in contacts.levels] == ["level-1", "level-2", "level-3"]
    assert contacts.next_level("level-1") == "level-2"
    assert contacts.next_level("level-3") is None
    lead = contacts.recipient("Operations Lead")
    assert lead.channels[0].kind == "email"


def _line_of(path: Path, needle: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if needle in line)


def test_a_bad_matrix_cell_names_file_and_line(ws: Workspace) -> None:
    path = ws.root / "incident_policy.yaml"
    path.write_text(
        path.read_text().replace("minor:       {critical: SEV3", "minor:       {critical: SEV9")
    )
    with pytest.raises(ValidationError) as caught:
        load_config(ws)
    assert "SEV9" in caught.value.message
    assert caught.value.location is not None
    assert caught.value.location.line == _line_of(path, "SEV9")
    assert "incident_policy.yaml" in caught.value.render()


def test_a_bad_duration_names_its_line(ws: Workspace) -> None:
    path = ws.root / "incident_policy.yaml"
    path.write_text(path.read_text().replace("ack_target: 15m", "ack_target: soon"))
    with pytest.raises(ValidationError) as caught:
        load_config(ws)
    assert caught.value.location is not None
    assert caught.value.location.line == _line_of(path, "ack_target: soon")


def test_an_escalation_loop_is_refused_with_its_line(ws: Workspace) -> None:
    path = ws.root / "contacts.yaml"
    path.write_text(contacts_yaml("http://127.0.0.1:9", loop=True))
    with pytest.raises(
        ValidationError, match="escalation loop: level-1 → level-2 → level-3 → level-1"
    ) as caught:
        load_config(ws)
    assert caught.value.location is not None
    assert caught.value.location.path.endswith("contacts.yaml")
    assert caught.value.location.line > 1


def test_a_severity_paging_an_unknown_level_is_refused(ws: Workspace) -> None:
    path = ws.root / "incident_policy.yaml"
    path.write_text(
        path.read_text().replace("page: [level-1, level-2, level-3]", "page: [level-9]")
    )
    with pytest.raises(ValidationError, match="level-9"):
        load_config(ws)
