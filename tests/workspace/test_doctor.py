"""`opsbook doctor` over a real workspace: what passes, warns and fails."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from opsbook.config import Settings
from opsbook.workspace import Workspace
from opsbook.workspace.doctor import run_checks
from opsbook.workspace.init import init_workspace

OPSBOOK = [sys.executable, "-m", "opsbook.cli.main"]


def _ws(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    init_workspace(target=root)
    return root


def test_a_fresh_workspace_is_ready_but_the_sandbox_is_not_up(tmp_path: Path) -> None:
    root = _ws(tmp_path)
    checks = {
        c.name: c
        for c in run_checks(
            workspace=Workspace.load(root), settings=Settings.from_env({}), env_name="sandbox"
        )
    }
    assert checks["runbooks"].status == "ok"
    assert checks["database"].status == "ok"
    assert checks["audit chain"].status == "ok"
    assert checks["sandbox"].status == "warning"


def test_missing_tools_and_broken_runbooks_fail_with_exit_1(tmp_path: Path) -> None:
    root = _ws(tmp_path)
    env_file = root / "environments" / "production.yaml"
    env_file.write_text(
        env_file.read_text() + "\nrequired_tools: [sh, no-such-tool-xyz]\n", encoding="utf-8"
    )
    (root / "runbooks" / "broken.md").write_text("---\nid: [\n---\n# x\n", encoding="utf-8")
    env = {**os.environ, "OPSBOOK_WORKSPACE": str(root)}
    res = subprocess.run(
        [*OPSBOOK, "doctor", "--env", "production", "--json"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert res.returncode == 1, res.stderr
    data = json.loads(res.stdout)
    by_name = {c["name"]: c for c in data["checks"]}
    assert by_name["tools"]["status"] == "failed"
    assert "no-such-tool-xyz" in by_name["tools"]["detail"]
    assert "sh" not in by_name["tools"]["detail"].split(": ", 1)[1].split(", ")
    assert (
        by_name["runbooks"]["status"] == "failed" and "broken.md" in by_name["runbooks"]["detail"]
    )
    res = subprocess.run(
        [*OPSBOOK, "doctor", "--env", "nowhere"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert res.returncode == 1 and "unknown environment 'nowhere'" in res.stdout
