"""`opsbook init DIR --role R` gives the local user roles in opsbook.toml (issue 18 §6): a fresh
workspace's OS user only holds `operator`, so approving or starting the security and DR
procedures needs more; a bad role is refused before anything is written."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from opsbook.workspace import Workspace

OPSBOOK = [sys.executable, "-m", "opsbook.cli.main"]


def _init(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "OPSBOOK_WORKSPACE"}
    return subprocess.run(
        [*OPSBOOK, "init", str(tmp_path / "ops"), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
        env={**env, "OPSBOOK_USER": "zoe"},
    )


def test_init_gives_the_local_user_roles(tmp_path: Path) -> None:
    out = _init(tmp_path, "--role", "approver", "--role", "security")
    assert out.returncode == 0, out.stderr
    assert "Roles of zoe: operator, approver, security (opsbook.toml [users])" in out.stdout
    ws = Workspace.load(tmp_path / "ops")
    assert ws.roles_of("zoe") == ("operator", "approver", "security")
    assert ws.roles_of("dba") == ("engineer", "approver")  # the template's users stay


def test_init_without_roles_says_what_the_user_holds(tmp_path: Path) -> None:
    out = _init(tmp_path)
    assert out.returncode == 0, out.stderr
    assert (
        "Roles of zoe: operator (default_roles)" in out.stdout and "--role approver" in out.stdout
    )
    assert Workspace.load(tmp_path / "ops").roles_of("zoe") == ("operator",)


def test_an_unknown_role_is_refused_before_writing(tmp_path: Path) -> None:
    out = _init(tmp_path, "--role", "aprover")
    assert out.returncode == 2
    assert "unknown role 'aprover'" in out.stderr and "approver" in out.stderr
    assert not (tmp_path / "ops").exists()
