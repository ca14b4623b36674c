"""`opsbook changes …` as real processes over a real workspace, SQLite and git: the whole
change with two reviewers and a sandbox run, the refusals (exit 2, nothing changed), the
production gate, an emergency override, the diff."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.lifecycle.test_changes import PRODUCTION, RUNBOOK, SANDBOX, TOML

OPSBOOK = [sys.executable, "-m", "opsbook.cli.main"]
GIT_ENV = {
    "GIT_AUTHOR_NAME": "opsbook tests",
    "GIT_COMMITTER_NAME": "opsbook tests",
    "GIT_AUTHOR_EMAIL": "tests@opsbook.invalid",
    "GIT_COMMITTER_EMAIL": "tests@opsbook.invalid",
}


@pytest.fixture
def root(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    (ws / "runbooks").mkdir(parents=True)
    (ws / "environments").mkdir()
    (ws / "opsbook.toml").write_text(TOML, encoding="utf-8")
    (ws / "environments" / "sandbox.yaml").write_text(SANDBOX, encoding="utf-8")
    (ws / "environments" / "production.yaml").write_text(PRODUCTION, encoding="utf-8")
    write(ws)
    return ws


def write(ws: Path, greeting: str = "hello") -> None:
    (ws / "runbooks" / "hello.md").write_text(
        RUNBOOK.format(greeting=greeting, reviewed="2026-11-20"), encoding="utf-8"
    )


def ob(root: Path, *args: str, user: str = "alice") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*OPSBOOK, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=root,
        stdin=subprocess.DEVNULL,
        env={**os.environ, **GIT_ENV, "OPSBOOK_WORKSPACE": str(root), "OPSBOOK_USER": user},
    )


def js(root: Path, *args: str, user: str = "alice") -> Any:
    out = ob(root, *args, "--json", user=user)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.mark.slow
def test_a_change_from_the_command_line(root: Path) -> None:
    out = ob(root, "changes", "propose", "runbooks/hello.md", "--reason", "INC-7 follow-up")
    assert out.returncode == 0, out.stderr
    assert "initialised a git repository" in out.stdout and "proposed change 1" in out.stdout

    # A self-review: exit 2, a clear message, nothing recorded.
    self_review = ob(root, "changes", "review", "1", "--technical")
    assert self_review.returncode == 2
    assert "nobody reviews their own change" in self_review.stderr
    assert "Traceback" not in self_review.stderr
    assert js(root, "changes", "show", "1")["reviews"] == []

    js(root, "changes", "review", "1", "--technical", "--comment", "ok", user="tess")
    reviewed = js(root, "changes", "review", "1", "--operational", "--as", "olga", user="nobody")
    assert reviewed["state"] == "reviewed"
    assert [r["reviewer"] for r in reviewed["reviews"]] == ["tess", "olga"]

    # Publishing before a test run: exit 2, naming the command that fixes it.
    early = ob(root, "changes", "publish", "1")
    assert early.returncode == 2 and "no recorded test run" in early.stderr
    assert "opsbook changes test 1" in early.stderr

    run = ob(root, "run", "hello#greet", "--env", "sandbox")
    assert run.returncode == 0, run.stderr
    tested = js(root, "changes", "test", "1")
    assert tested["state"] == "tested" and tested["test_environment"] == "sandbox"
    assert js(root, "changes", "approve", "1", user="mia")["approved_by"] == "mia"

    # Production refuses the digest until it is published.
    refused = ob(root, "run", "hello#greet", "--env", "production", "--yes")
    assert refused.returncode == 2 and "not a published runbook" in refused.stderr

    pub = js(root, "changes", "publish", "1", "--inform", "tess")
    assert (pub["version"], pub["git_tag"], pub["state"]) == (1, "runbook/hello/v1", "published")
    assert ob(root, "run", "hello#greet", "--env", "production", "--yes").returncode == 0
    assert js(root, "changes", "ack", "1", user="tess")["state"] == "trained"

    shown = ob(root, "changes", "show", "1")
    assert "[x] publish" in shown.stdout and "runbook/hello/v1" in shown.stdout
    listed = js(root, "changes", "list", "--published")
    assert [p["git_tag"] for p in listed] == ["runbook/hello/v1"]

    # v2 through the same steps, then the diff between the two.
    write(root, greeting="hello world")
    js(root, "changes", "propose", "runbooks/hello.md", "--reason", "clearer greeting")
    js(root, "changes", "review", "2", "--technical", user="tess")
    js(root, "changes", "review", "2", "--operational", user="olga")
    assert ob(root, "run", "hello#greet", "--env", "sandbox").returncode == 0
    js(root, "changes", "test", "2")
    js(root, "changes", "approve", "2", user="mia")
    js(root, "changes", "publish", "2")
    diff = js(root, "changes", "diff", "hello")
    assert (diff["from"], diff["to"]) == ("runbook/hello/v1", "runbook/hello/v2")
    assert "procedure greet: step say-hello: command changed" in diff["summary"]
    assert "+echo hello world" in diff["unified"]
    text = ob(root, "changes", "diff", "hello", "--from", "v1", "--to", "v2")
    assert "step say-hello: command changed" in text.stdout and "-echo hello\n" in text.stdout


def test_a_runbook_that_does_not_lint_is_refused_with_its_location(root: Path) -> None:
    path = root / "runbooks" / "hello.md"
    path.write_text(
        path.read_text(encoding="utf-8").replace(
            "permissions: [operator]", "permissions: [operator]\nrisk: extreme"
        ),
        encoding="utf-8",
    )
    out = ob(root, "changes", "propose", "runbooks/hello.md", "--reason", "x")
    assert out.returncode == 2
    assert "does not lint" in out.stderr and "hello.md:" in out.stderr
    assert not (root / ".git").exists()
    assert js(root, "changes", "list") == []


def test_an_emergency_override_from_the_command_line(root: Path) -> None:
    asked = js(root, "changes", "override", "hello", "--reason", "INC-12")
    own = ob(root, "changes", "override-approve", str(asked["id"]))
    assert own.returncode == 2 and "own override" in own.stderr
    ok = js(root, "changes", "override-approve", str(asked["id"]), user="olga")
    assert ok["state"] == "approved" and ok["active"] is True
    assert ob(root, "run", "hello#greet", "--env", "production", "--yes").returncode == 0
    (listed,) = js(root, "changes", "overrides")
    assert listed["uses"] == 1 and listed["decided_by"] == "olga"


def test_due_lists_and_exit_codes(root: Path) -> None:
    due = ob(root, "changes", "due", "--all", "--json")
    assert due.returncode == 0, due.stderr
    (row,) = json.loads(due.stdout)
    assert row["runbook_id"] == "hello" and row["owner"] == "operations"
    drills = ob(root, "changes", "drills-due")
    assert drills.returncode == 1 and "hello#greet" in drills.stdout
    assert "never drilled" in drills.stdout
    bad = ob(root, "changes", "review", "1", "--technical", "--operational")
    assert bad.returncode == 2 and "one of them" in bad.stderr
    missing = ob(root, "changes", "show", "99")
    assert missing.returncode == 2 and "no runbook change 99" in missing.stderr
