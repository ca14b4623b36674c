"""One source of truth for acknowledgement, update and paging targets (issue 18 §6): they live
in incident_policy.yaml; the same settings in contacts.yaml's escalation_policy are flagged by
`opsbook lint` with file:line and where to set them instead."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from opsbook.workspace import Workspace
from opsbook.workspace.init import init_workspace
from opsbook.workspace.lint_config import lint_workspace_config

OPSBOOK = [sys.executable, "-m", "opsbook.cli.main"]


def test_the_shipped_contacts_do_not_repeat_the_policy(tmp_path: Path) -> None:
    init_workspace(target=tmp_path / "ws")
    ws = Workspace.load(tmp_path / "ws")
    assert lint_workspace_config(ws) == []
    text = ws.contacts_path.read_text()
    for key in ("ack_timeout", "update_interval", "start_level", "also_page"):
        assert key not in text, key


def test_lint_flags_policy_settings_in_contacts(tmp_path: Path) -> None:
    init_workspace(target=tmp_path / "ws")
    ws = Workspace.load(tmp_path / "ws")
    text = ws.contacts_path.read_text()
    text = text.replace(
        "escalation_policy:\n",
        "escalation_policy:\n  ack_timeout: 15m\n  update_interval: {SEV-1: 30m}\n",
    )
    ws.contacts_path.write_text(text)
    line = text.split("\n").index("  ack_timeout: 15m") + 1
    findings = lint_workspace_config(ws)
    assert [(f.code, f.line) for f in findings] == [("OB201", line), ("OB201", line + 1)]
    assert "severities.<SEV>.ack_target in incident_policy.yaml" in findings[0].message
    assert "update_every" in findings[1].message

    out = subprocess.run(
        [*OPSBOOK, "lint", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "OPSBOOK_WORKSPACE": str(ws.root)},
    )
    found = [f for f in json.loads(out.stdout) if f["code"] == "OB201"]
    assert len(found) == 2 and found[0]["path"].endswith("contacts.yaml")
    assert found[0]["line"] == line
