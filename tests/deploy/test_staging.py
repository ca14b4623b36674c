"""Staging is a second sandbox (its own ports, data directory and ledger): a release promoted
there is testing evidence on the production-tier record of the same version, and the start of
the change for DORA's lead time."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from opsbook.sandbox import lifecycle
from opsbook.workspace import Workspace
from opsbook.workspace.init import init_workspace
from tests.deploy.conftest import FAST_DEPLOYMENTS, Deployer, free_ports, move_ports
from tests.workspace.drive import failed_steps

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def two(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workspace]:
    root = tmp_path_factory.mktemp("staging") / "bank"
    init_workspace(target=root)
    move_ports(root / "environments" / "sandbox.yaml")
    staging = root / "environments" / "staging.yaml"
    ports = free_ports(6)
    staging.write_text(
        re.sub(r"\b1812([0-5])\b", lambda m: str(ports[int(m.group(1))]), staging.read_text()),
        encoding="utf-8",
    )
    (root / "deployments.yaml").write_text(FAST_DEPLOYMENTS, encoding="utf-8")
    (root / "change_calendar.yaml").write_text("freezes: []\n", encoding="utf-8")
    ws = Workspace.load(root)
    lifecycle.up(workspace=ws, env_name="staging")
    lifecycle.up(workspace=ws)
    try:
        yield ws
    finally:
        lifecycle.down(workspace=ws)
        lifecycle.down(workspace=ws, env_name="staging")


def test_a_release_promoted_on_staging_is_evidence_for_production(two: Workspace) -> None:
    d = Deployer(two.root, fake_platform=False)
    args = ["payment", "1.5.0", "--strategy", "blue-green", "--reason", "fees"]
    code, staged = d.deploy(*args, "--ticket", "CHG-300", "--env", "staging")
    assert code == 0 and isinstance(staged, dict)
    assert staged["state"] == "succeeded", failed_steps(staged)  # staging needs no checklist
    on_staging = lifecycle.status(workspace=two, env_name="staging")["services"]
    on_sandbox = lifecycle.status(workspace=two)["services"]
    assert next(s for s in on_staging if s["name"] == "payment")["version"] == "1.5.0"
    assert next(s for s in on_sandbox if s["name"] == "payment")["version"] == "1.4.2"
    staging_release = d.releases()[0]
    assert (staging_release["tier"], staging_release["state"]) == ("staging", "promoted")
    checked = d.run(
        "deployment-procedures#pre-deployment-checklist", {"service": "payment", "version": "1.5.0"}
    )
    assert checked["state"] == "succeeded", failed_steps(checked)
    code, prod = d.deploy(*args, "--ticket", "CHG-301", "--env", "sandbox")
    assert code == 0 and isinstance(prod, dict)
    assert prod["state"] == "succeeded", failed_steps(prod)
    record = d.record(d.releases()[0]["id"])
    assert record["tier"] == "production"
    evidence = record["testing_evidence"]
    assert [e["release_id"] for e in evidence["staging"]] == [staging_release["id"]]
    assert evidence["lead_started_at"] == staging_release["requested_at"]
