"""The YAML alias bomb (issue 16 §3) in every kind of YAML file opsbook reads: the command
that reads the file refuses it at once, in a real process, with little memory, naming
file:line and the fix, and without a traceback.

Each command runs under a small wrapper process that reports the command's peak RSS
(``RUSAGE_CHILDREN`` of the wrapper is the command alone) and caps its address space at
2 GB so a regression fails the test instead of exhausting the machine. The 100 MB bound
is a behaviour check, not a timing: the bomb needed gigabytes before it was refused.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

from opsbook.monitoring.background import _contacts
from tests.api.harness import serve

CHILD = textwrap.dedent(
    """
    import json, resource, subprocess, sys

    def cap():
        resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))

    proc = subprocess.run(
        json.loads(sys.argv[1]), cwd=sys.argv[2], capture_output=True, text=True,
        timeout=60, preexec_fn=cap, stdin=subprocess.DEVNULL,
    )
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(json.dumps({"rc": proc.returncode, "out": proc.stdout, "err": proc.stderr,
                      "maxrss_kb": usage.ru_maxrss}))
    """
)


def bomb() -> str:
    """Eight levels of nine aliases each: 9**8 (43 million) items once expanded."""
    lines = ["l0: &a0 [" + ",".join(["lol"] * 9) + "]"]
    for i in range(1, 8):
        lines.append(f"l{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Case:
    file: str  # relative to the workspace
    args: tuple[str, ...]  # the opsbook command that reads it
    kind: str  # the files named in the fix
    rc: int = 2


CASES = {
    "contacts": Case(
        "contacts.yaml", ("incidents", "declare", "Bomb", "--severity", "SEV4"), "contacts.yaml"
    ),
    "incident-policy": Case(
        "incident_policy.yaml",
        ("incidents", "declare", "Bomb", "--severity", "SEV4"),
        "incident_policy.yaml",
    ),
    "monitoring-config": Case(
        "environments/sandbox.yaml", ("monitor", "check", "--env", "sandbox"), "environment files"
    ),
    "sandbox-config": Case("environments/sandbox.yaml", ("sandbox", "status"), "environment files"),
    "environment-run": Case(
        "environments/production.yaml",
        ("run", "demo#smoke-test", "--env", "production", "--dry-run"),
        "environment files",
    ),
}


def run_in_child(ws: Path, *args: str) -> dict[str, object]:
    cmd = [sys.executable, "-m", "opsbook.cli.main", "--workspace", str(ws), *args]
    done = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(cmd), str(ws)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        env={**os.environ, "NO_COLOR": "1", "COLUMNS": "200"},
    )
    result: dict[str, object] = json.loads(done.stdout)
    return result


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    subprocess.run(
        [sys.executable, "-m", "opsbook.cli.main", "init", str(root)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return root


def plant(path: Path) -> int:
    """Append the bomb to ``path``; the 1-based line of its first anchor."""
    text = path.read_text(encoding="utf-8")
    if not text.endswith("\n"):
        text += "\n"
    path.write_text(text + bomb(), encoding="utf-8")
    return text.count("\n") + 1


@pytest.mark.parametrize("name", list(CASES))
def test_the_bomb_is_refused_by_the_command_that_reads_the_file(ws: Path, name: str) -> None:
    case = CASES[name]
    line = plant(ws / case.file)
    result = run_in_child(ws, *case.args)
    err = str(result["err"]) + str(result["out"])
    assert result["rc"] == case.rc, err
    assert f"{case.file}:{line}:" in err
    assert "anchors (&a0) and aliases are not allowed" in err
    assert f"write the values out; YAML aliases are not allowed in {case.kind}" in err
    assert "Traceback" not in err
    assert isinstance(result["maxrss_kb"], int) and result["maxrss_kb"] < 100 * 1024


def test_doctor_reports_the_bomb_as_a_failed_check(ws: Path) -> None:
    """``opsbook doctor`` reports a bad environment file as a failed check (exit 1)."""
    plant(ws / "environments" / "production.yaml")
    result = run_in_child(ws, "doctor", "--env", "production", "--json")
    assert result["rc"] == 1, result["err"]
    checks = json.loads(str(result["out"]))["checks"]
    env = next(c for c in checks if c["name"] == "environment production")
    assert env["status"] == "failed"
    assert "aliases are not allowed" in env["detail"]
    assert "Traceback" not in str(result["err"])
    assert isinstance(result["maxrss_kb"], int) and result["maxrss_kb"] < 100 * 1024


def test_lint_refuses_the_bomb_in_a_runbook(ws: Path) -> None:
    path = ws / "runbooks" / "bomb.md"
    path.write_text("---\nid: bomb\ntitle: Bomb\n" + bomb() + "---\n\n# Bomb\n", encoding="utf-8")
    result = run_in_child(ws, "lint", "--json", str(path))
    assert result["rc"] == 1, result["err"]
    findings = json.loads(str(result["out"]))
    assert [f["code"] for f in findings] == ["OB001"]
    assert "YAML aliases are not allowed in runbooks" in findings[0]["message"]
    assert isinstance(result["maxrss_kb"], int) and result["maxrss_kb"] < 100 * 1024


def test_serve_answers_with_the_bomb_in_contacts_and_an_environment(tmp_path: Path) -> None:
    """``opsbook serve`` keeps serving: the quick reference shows the contacts problem (as
    for any bad contacts.yaml), a bad environment file is a 422 naming file:line, and the
    escalation loop reads no levels instead of failing."""
    with serve(tmp_path / "ws") as served:
        contacts_line = plant(served.ws.contacts_path)
        env_line = plant(served.ws.environments_dir / "production.yaml")
        viewer = served.user("vic", ["viewer"])
        ref = viewer.get("/api/v1/reference")
        assert ref.status_code == 200
        problem = ref.json()["contacts"]["problem"]
        assert problem.startswith(f"contacts.yaml:{contacts_line}: ")
        assert "aliases are not allowed in contacts.yaml" in problem
        prod = viewer.get("/api/v1/reference", params={"environment": "production"})
        assert prod.status_code == 422
        assert f"production.yaml:{env_line}:" in str(prod.json())
        assert "aliases are not allowed" in str(prod.json())
        assert _contacts(served.ctx) == {}
        assert viewer.get("/api/v1/health").json()["status"] == "ok"
