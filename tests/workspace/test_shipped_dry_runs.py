"""Every procedure `opsbook init` ships dry-runs cleanly: `opsbook run RB#PROC --dry-run` (the
real console script) exits 0, prints no traceback, and stores a succeeded dry-run execution."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from opsbook.runbooks.catalogue import load_catalogue
from opsbook.runbooks.model import Procedure
from opsbook.workspace.init import init_workspace
from tests.workspace.conftest import EXAMPLE_PARAMS

OPSBOOK = [sys.executable, "-m", "opsbook.cli.main"]
TEMPLATES = Path(__file__).resolve().parents[2] / "src/opsbook/workspace/templates/runbooks"


def shipped_refs() -> list[str]:
    """The procedures of the shipped runbooks (read from the package's templates)."""
    return sorted(load_catalogue(TEMPLATES).refs())


@pytest.fixture(scope="module")
def bank(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("shipped") / "bank"
    init_workspace(target=root)
    return root


def params_for(ref: str, procedure: Procedure) -> list[str]:
    """Example values where the conftest has them; a required parameter without a default or
    an example takes its first choice."""
    values = dict(EXAMPLE_PARAMS.get(ref, {}))
    for p in procedure.params:
        if p.name in values or p.default is not None or not p.required:
            continue
        assert p.choices, f"{ref}: add an example for required parameter {p.name!r} to conftest"
        values[p.name] = p.choices[0]
    return [arg for name, value in values.items() for arg in ("--param", f"{name}={value}")]


def user_for(bank: Path, procedure: Procedure) -> str:
    """Someone the workspace's opsbook.toml allows to start the procedure."""
    users = tomllib.loads((bank / "opsbook.toml").read_text())["users"]
    allowed = set(procedure.permissions)
    if not allowed or "operator" in allowed:
        return "ops-engineer"
    return str(next(name for name, roles in users.items() if allowed & set(roles)))


def test_the_shipped_runbooks_have_procedures() -> None:
    refs = shipped_refs()
    assert {"demo#smoke-test", "demo#approval-demo", "backup-recovery#backup-verification"} <= set(
        refs
    )


@pytest.mark.parametrize("ref", shipped_refs())
def test_every_shipped_procedure_dry_runs(bank: Path, ref: str) -> None:
    _, procedure = load_catalogue(bank / "runbooks").resolve(ref)
    environment = (
        "sandbox"
        if not procedure.environments or "sandbox" in procedure.environments
        else procedure.environments[0]
    )
    done = subprocess.run(
        [
            *OPSBOOK,
            "run",
            ref,
            "--dry-run",
            "--json",
            "--env",
            environment,
            "--as",
            user_for(bank, procedure),
            *params_for(ref, procedure),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "OPSBOOK_WORKSPACE": str(bank), "NO_COLOR": "1"},
        stdin=subprocess.DEVNULL,
        timeout=120,
    )
    assert "Traceback" not in done.stdout + done.stderr, done.stderr
    assert done.returncode == 0, f"{ref}: exit {done.returncode}\n{done.stderr}\n{done.stdout}"
    result = json.loads(done.stdout)
    assert result["dry_run"] is True
    assert result["state"] == "succeeded", result["reason"]
    assert all(s["state"] in ("succeeded", "skipped") for s in result["steps"]), result["steps"]


def test_the_smoke_test_dry_run_at_the_terminal_and_in_the_list(bank: Path) -> None:
    def ob(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*OPSBOOK, *args],
            capture_output=True,
            text=True,
            env={**os.environ, "OPSBOOK_WORKSPACE": str(bank), "NO_COLOR": "1", "COLUMNS": "200"},
            stdin=subprocess.DEVNULL,
            timeout=120,
        )

    done = ob("run", "demo#smoke-test", "--dry-run")
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "'<result of step tools.json.python>'" in out
    assert "would check: exit_code == 0; json.ok == true" in out
    assert "would wait: AwaitingInput" in out
    assert "Succeeded (dry run: nothing ran)" in out
    # The environment file's contents are not dumped (once per service, as they were).
    assert out.count('"probes"') <= 1
    execution_id = out.rsplit("execution ", 1)[1].split()[0]
    listed = ob("executions", "list")
    line = next(li for li in listed.stdout.splitlines() if execution_id in li)
    assert "succeeded (dry run)" in line
    (row,) = [
        r for r in json.loads(ob("executions", "list", "--json").stdout) if r["id"] == execution_id
    ]
    assert row["dry_run"] is True and row["state"] == "succeeded"
    assert "(dry run: nothing ran)" in ob("executions", "show", execution_id).stdout
