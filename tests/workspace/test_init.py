"""`opsbook init`: the files it writes, what it refuses to overwrite, and reading the result."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from opsbook.errors import NotFoundError, ValidationError, WorkspaceError
from opsbook.workspace import Workspace, find_workspace, load_environment
from opsbook.workspace.init import init_workspace, template_files

EXPECTED = {
    "opsbook.toml",
    ".gitignore",
    "contacts.yaml",
    "incident_policy.yaml",
    "training.yaml",
    "environments/sandbox.yaml",
    "environments/production.yaml",
    "environments/staging.yaml",
    "deployments.yaml",
    "change_calendar.yaml",
    "migrations/0001_account_display_name.sql",
    "runbooks/README.md",
    "runbooks/00_demo.md",
    "runbooks/01_system_monitoring.md",
    "runbooks/02_incident_response.md",
    "runbooks/03_deployment_procedures.md",
    "runbooks/04_troubleshooting_guide.md",
    "runbooks/05_backup_recovery.md",
    "runbooks/06_security_operations.md",
    "runbooks/07_opsbook_cluster.md",
}


def relative(paths: list[Path], root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in paths}


def test_init_writes_every_template_file(tmp_path: Path) -> None:
    root = tmp_path / "new" / "bank"
    written = init_workspace(target=root)
    assert relative(written, root) == EXPECTED
    assert {str(rel) for rel, _ in template_files()} == EXPECTED
    for rel, content in template_files():
        assert (root / rel).read_bytes() == content
    assert (root / ".opsbook").is_dir()
    assert ".opsbook/" in (root / ".gitignore").read_text().splitlines()
    assert ".opsbook-audit/" in (root / ".gitignore").read_text().splitlines()
    assert not (root / "gitignore").exists()


def test_init_into_an_existing_empty_directory(tmp_path: Path) -> None:
    written = init_workspace(target=tmp_path)
    assert relative(written, tmp_path) == EXPECTED


def test_the_workspace_settings(workspace_root: Path) -> None:
    ws = Workspace.load(workspace_root)
    assert ws.name == "banking-platform"
    assert ws.default_environment == "sandbox"
    assert ws.roles_of("ops-lead") == ("operator", "engineer")
    assert ws.roles_of("dba") == ("engineer", "approver")
    assert ws.roles_of("eng-manager") == ("manager", "approver")
    assert ws.roles_of("security-engineer") == ("security", "engineer", "approver")
    assert ws.roles_of("someone-new") == ("operator",)
    assert ws.environment_names() == ["production", "sandbox", "staging"]


def test_refuses_to_overwrite_a_workspace(workspace_root: Path) -> None:
    readme = workspace_root / "runbooks" / "01_system_monitoring.md"
    readme.write_text("my edits\n")
    with pytest.raises(WorkspaceError, match="already an opsbook workspace") as caught:
        init_workspace(target=workspace_root)
    assert caught.value.hint is not None and "--force" in caught.value.hint
    assert readme.read_text() == "my edits\n"


def test_force_rewrites_templates_and_keeps_other_files(workspace_root: Path) -> None:
    edited = workspace_root / "runbooks" / "01_system_monitoring.md"
    edited.write_text("my edits\n")
    mine = workspace_root / "runbooks" / "10_my_runbook.md"
    mine.write_text("# mine\n")
    state = workspace_root / ".opsbook" / "opsbook.db"
    state.write_bytes(b"state")
    written = init_workspace(target=workspace_root, force=True)
    assert relative(written, workspace_root) == EXPECTED - {".gitignore"}
    assert edited.read_text().startswith("---\nid: system-monitoring\n")
    assert mine.read_text() == "# mine\n"
    assert state.read_bytes() == b"state"


def test_refuses_files_a_template_would_replace(tmp_path: Path) -> None:
    (tmp_path / "contacts.yaml").write_text("levels: []\n")
    with pytest.raises(WorkspaceError, match=r"contacts\.yaml") as caught:
        init_workspace(target=tmp_path)
    assert caught.value.hint is not None and "--force" in caught.value.hint
    assert (tmp_path / "contacts.yaml").read_text() == "levels: []\n"
    assert not (tmp_path / "opsbook.toml").exists()


def test_an_existing_gitignore_gains_the_state_directory(tmp_path: Path) -> None:
    (tmp_path / ".gitignore").write_text("*.pyc")
    written = init_workspace(target=tmp_path)
    assert tmp_path / ".gitignore" in written
    assert (tmp_path / ".gitignore").read_text().splitlines() == [
        "*.pyc",
        "# opsbook state",
        ".opsbook/",
        "# opsbook audit signing key and witness",
        ".opsbook-audit/",
    ]
    (tmp_path / "opsbook.toml").unlink()
    (tmp_path / "other").mkdir()
    again = init_workspace(target=tmp_path, force=True)
    assert tmp_path / ".gitignore" not in again
    assert (tmp_path / ".gitignore").read_text().count(".opsbook/") == 1
    assert (tmp_path / ".gitignore").read_text().count(".opsbook-audit/") == 1


def test_refuses_a_file_as_target(tmp_path: Path) -> None:
    target = tmp_path / "bank"
    target.write_text("not a directory")
    with pytest.raises(WorkspaceError, match="not a directory"):
        init_workspace(target=target, force=True)


def test_an_unwritable_target_is_a_workspace_error(tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a directory should be")
    with pytest.raises(WorkspaceError, match="cannot write the workspace") as caught:
        init_workspace(target=blocker / "bank")
    assert caught.value.hint


def test_find_workspace_from_a_subdirectory(workspace_root: Path) -> None:
    deep = workspace_root / "runbooks" / "drafts"
    deep.mkdir()
    assert find_workspace(start=deep).root == workspace_root.resolve()


def test_find_workspace_from_the_environment_variable(
    workspace_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPSBOOK_WORKSPACE", str(workspace_root))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    assert find_workspace(start=elsewhere).root == workspace_root.resolve()


def test_find_workspace_outside_any_workspace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPSBOOK_WORKSPACE", raising=False)
    with pytest.raises(WorkspaceError, match="no opsbook workspace") as caught:
        find_workspace(start=tmp_path)
    assert caught.value.hint is not None and "opsbook init" in caught.value.hint


def test_load_the_sandbox_environment(workspace_root: Path) -> None:
    env = load_environment(Workspace.load(workspace_root), "sandbox")
    assert env.platform == "local"
    data = env.data
    assert data["namespace"] == "banking-platform-sandbox"
    assert data["helm_release"] == "banking-platform-sandbox"
    assert data["api_base"] == "http://127.0.0.1:18100"
    assert data["sandbox"] == {
        "data_dir": ".opsbook/sandbox",
        "payment_network_port": 18105,
        "database_url": None,
    }
    assert data["databases"] == {"ledger": {"url": "sqlite:///.opsbook/sandbox/ledger.db"}}
    assert data["monitoring"] == {"prometheus": None, "grafana": None, "kibana": None}
    expected = [("account", 18101), ("transaction", 18102), ("payment", 18103)]
    expected.append(("notification", 18104))
    assert [(s["name"], s["port"]) for s in env.services] == expected
    for svc in env.services:
        base = f"http://127.0.0.1:{svc['port']}"
        assert svc["replicas"] == 1
        assert svc["health_url"] == f"{base}/health"
        assert svc["metrics_url"] == f"{base}/metrics"


def test_load_the_production_environment(workspace_root: Path) -> None:
    env = load_environment(Workspace.load(workspace_root), "production")
    data = env.data
    assert env.platform == "kubernetes"
    assert data["cluster"] == "banking-platform-prod-aks"
    assert data["namespace"] == "banking-platform-prod"
    assert data["resource_group"] == "banking-platform-prod-rg"
    assert data["subscription"] == "banking-platform-production"
    assert data["regions"] == {"primary": "East US", "dr": "West US 2"}
    assert data["databases"]["primary"]["host"] == "banking-platform-prod-sql.database.windows.net"
    assert data["databases"]["dr"]["host"] == "banking-platform-dr-sql.database.windows.net"
    assert all(db["url"] is None for db in data["databases"].values())
    assert data["key_vault"] == "banking-platform-prod-kv"
    assert data["registry"] == "bankingplatformacr.azurecr.io"
    assert data["monitoring"]["grafana"] == "https://grafana.banking-platform.com"
    assert data["monitoring"]["kibana"] == "https://kibana.banking-platform.com"
    assert data["monitoring"]["prometheus"] is None
    assert data["api_base"] == "https://api.banking-platform.com"
    assert data["helm_release"] == "banking-platform-prod"
    assert [s["health_url"] for s in env.services] == [
        f"https://api.banking-platform.com/api/{name}/health"
        for name in ("account", "transaction", "payment", "notification")
    ]
    assert data["required_tools"] == ["kubectl", "helm", "az", "git", "curl"]


def test_an_unknown_environment_names_the_known_ones(workspace_root: Path) -> None:
    with pytest.raises(NotFoundError, match="unknown environment 'qa'") as caught:
        load_environment(Workspace.load(workspace_root), "qa")
    assert caught.value.hint is not None
    assert "production" in caught.value.hint and "sandbox" in caught.value.hint
    assert "staging" in caught.value.hint


def test_bad_yaml_in_an_environment_names_the_line(workspace_root: Path) -> None:
    path = workspace_root / "environments" / "qa.yaml"
    path.write_text("name: qa\nplatform: local\nservices: [account\n")
    with pytest.raises(ValidationError) as caught:
        load_environment(Workspace.load(workspace_root), "qa")
    loc = caught.value.location
    assert loc is not None and loc.path == str(path)
    assert loc.line == 4
    assert "fix the YAML" in (caught.value.hint or "")


def test_every_template_data_file_parses(workspace_root: Path) -> None:
    for path in sorted(workspace_root.rglob("*.yaml")):
        assert isinstance(yaml.safe_load(path.read_text(encoding="utf-8")), dict), path
    config = tomllib.loads((workspace_root / "opsbook.toml").read_text(encoding="utf-8"))
    assert {"workspace", "users"} <= set(config)  # plus lifecycle sections ([changes], …)


def test_contacts_hold_the_escalation_levels(workspace_root: Path) -> None:
    data = yaml.safe_load((workspace_root / "contacts.yaml").read_text(encoding="utf-8"))
    levels = {level["name"]: level for level in data["levels"]}
    assert list(levels) == ["level-1", "level-2", "level-3"]
    for level in levels.values():
        assert level["description"] and level["availability"]
        assert all({"role", "phone", "when"} <= set(c) for c in level["contacts"])
    phones = {c["role"]: c["phone"] for level in levels.values() for c in level["contacts"]}
    assert phones == {
        "Operations Lead": "+1-555-0101",
        "Senior Operations Engineer": "+1-555-0102",
        "Platform Engineering Lead": "+1-555-0201",
        "Database Administrator": "+1-555-0202",
        "Security Engineer": "+1-555-0203",
        "Engineering Manager": "+1-555-0301",
        "CTO": "+1-555-0302",
        "CEO": "+1-555-0303",
    }
    assert levels["level-1"]["availability"] == "24/7"
    external = {e["name"]: e for e in data["external"]}
    assert external["External Security Firm"]["phone"] == "+1-555-0401"
    assert "Case Management" in external["Azure Support"]["contact"]
    policy = data["escalation_policy"]
    assert set(policy["resolve_timeout"]) == {"SEV-1", "SEV-2", "SEV-3", "SEV-4"}
    assert policy["repeat"] == 2
    assert "ack_timeout" not in policy  # incident_policy.yaml's ack_target (lint OB201)


def test_opsbook_init_on_the_command_line(tmp_path: Path) -> None:
    target = tmp_path / "bank"
    command = [sys.executable, "-m", "opsbook.cli.main", "init", str(target)]
    first = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert first.returncode == 0, first.stderr
    assert (target / "runbooks" / "00_demo.md").is_file()
    second = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert second.returncode == 2
    assert "already an opsbook workspace" in second.stderr
    assert "Traceback" not in second.stderr
