"""`opsbook migrations lint|status|apply` through the real CLI on a fresh `opsbook init`
workspace (its ledger created, the sandbox not started), with exit codes and --json; and the
runbook actions deploy.lint_migration and deploy.migrate."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from opsbook.actions._registry import ActionContext, load_registry
from opsbook.errors import ValidationError
from opsbook.sandbox.ledger import Ledger, seed_customers
from opsbook.workspace import Workspace, load_environment
from opsbook.workspace.init import init_workspace

TEMPLATE = "migrations/0001_account_display_name.sql"
BAD = (
    "-- a migration that would hurt\n"
    "CREATE INDEX accounts_owner ON accounts (owner);\n"
    "ALTER TABLE accounts\n"
    "  DROP COLUMN currency;\n"
)


@pytest.fixture
def bank(tmp_path: Path) -> Workspace:
    root = tmp_path / "bank"
    init_workspace(target=root)
    ws = Workspace.load(root)
    ledger = Ledger(f"sqlite:///{root / '.opsbook' / 'sandbox' / 'ledger.db'}")
    ledger.init_schema()
    seed_customers(ledger)
    ledger.close()
    return ws


def ob(ws: Workspace, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "opsbook.cli.main", *args],
        capture_output=True,
        text=True,
        cwd=ws.root,
        env={**os.environ, "OPSBOOK_WORKSPACE": str(ws.root), "OPSBOOK_USER": "dana"},
        timeout=120,
    )


def test_init_ships_the_expand_migration_and_it_lints_clean(bank: Workspace) -> None:
    assert (bank.root / TEMPLATE).is_file()
    r = ob(bank, "migrations", "lint", TEMPLATE)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.strip() == "1 file: 0 errors, 0 warnings (sqlite, running versions 1.4.2)"


def test_lint_prints_file_line_col_rule_and_the_fix_and_exits_1(bank: Workspace) -> None:
    (bank.root / "migrations" / "0002_bad.sql").write_text(BAD, encoding="utf-8")
    r = ob(bank, "migrations", "lint", "migrations/0002_bad.sql", TEMPLATE)
    assert r.returncode == 1, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith(
        "migrations/0002_bad.sql:2:8: require-concurrent-index-creation: (warning) "
    )
    assert lines[1].startswith("  fix: ")
    assert lines[2].startswith(
        "migrations/0002_bad.sql:4:15: drop-column-still-read: accounts.currency is still read"
    )
    assert lines[3].startswith("  fix: contract later")
    assert lines[-1] == "2 files: 1 error, 1 warning (sqlite, running versions 1.4.2)"
    # on PostgreSQL the index build is an error
    r = ob(
        bank, "migrations", "lint", "migrations/0002_bad.sql", "--dialect", "postgresql", "--json"
    )
    assert r.returncode == 1
    out = json.loads(r.stdout)
    assert (out["errors"], out["warnings"]) == (2, 0)
    [report] = out["files"]
    assert [(f["rule"], f["line"], f["column"]) for f in report["findings"]] == [
        ("require-concurrent-index-creation", 2, 8),
        ("drop-column-still-read", 4, 15),
    ]


def test_lint_usage_errors_exit_2(bank: Workspace) -> None:
    r = ob(bank, "migrations", "lint", "migrations/0009_missing.sql")
    assert r.returncode == 2 and "no migration file migrations/0009_missing.sql" in r.stderr
    r = ob(bank, "migrations", "lint", TEMPLATE, "--dialect", "oracle")
    assert r.returncode == 2 and "unknown dialect" in r.stderr
    assert ob(bank, "migrations", "lint").returncode == 2
    r = ob(bank, "migrations", "lint", TEMPLATE, "--env", "nowhere", "--json")
    assert r.returncode == 2 and json.loads(r.stderr)["error"] == "not_found"


def test_apply_status_reapply_and_refusals_through_the_cli(bank: Workspace) -> None:
    r = ob(bank, "migrations", "status", "--json")
    assert r.returncode == 0, r.stderr
    assert [(m["version"], m["state"]) for m in json.loads(r.stdout)["migrations"]] == [
        ("0001", "pending")
    ]
    assert ob(bank, "migrations", "apply", TEMPLATE).returncode == 2  # --ticket is required
    r = ob(bank, "migrations", "apply", TEMPLATE, "--ticket", "CHG-1")
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith(f"applied {TEMPLATE} (1 statement) to the ledger of sandbox in")
    assert lines[1].startswith("backup: bk-")
    assert lines[-1].startswith("ledger invariants: OK")
    r = ob(bank, "migrations", "apply", TEMPLATE, "--ticket", "CHG-1", "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["status"] == "already-applied"
    r = ob(bank, "migrations", "status")
    assert r.returncode == 0 and r.stdout.startswith("0001  account_display_name")
    assert "applied" in r.stdout and "by dana (CHG-1)" in r.stdout
    # a changed file with an applied version: exit 2
    path = bank.root / TEMPLATE
    path.write_text(path.read_text() + "-- edited\n", encoding="utf-8")
    r = ob(bank, "migrations", "apply", TEMPLATE, "--ticket", "CHG-2", "--json")
    assert r.returncode == 2 and json.loads(r.stderr)["error"] == "conflict"
    # lint errors: exit 1, every finding with its place, nothing applied
    (bank.root / "migrations" / "0002_bad.sql").write_text(BAD, encoding="utf-8")
    r = ob(bank, "migrations", "apply", "migrations/0002_bad.sql", "--ticket", "CHG-3")
    assert r.returncode == 1
    assert "migrations/0002_bad.sql:4:15: drop-column-still-read" in r.stderr
    r = ob(bank, "migrations", "status", "--json")
    states = {m["version"]: m["state"] for m in json.loads(r.stdout)["migrations"]}
    assert states == {"0001": "changed", "0002": "pending"}
    r = ob(bank, "migrations", "apply", TEMPLATE, "--ticket", "CHG-1", "--lock-timeout", "soon")
    assert r.returncode == 2 and "--lock-timeout must be a duration" in r.stderr


def _ctx(ws: Workspace, *, dry_run: bool = False) -> ActionContext:
    env = load_environment(ws, "sandbox")
    return ActionContext(
        environment_name="sandbox",
        environment=env.data,
        workspace=ws.root,
        execution_id="ex-test-1",
        started_by="dana",
        dry_run=dry_run,
    )


def _run(name: str, ctx: ActionContext, args: dict[str, Any]) -> Any:
    async def call() -> Any:
        return await load_registry().get(name).func(ctx, args)

    return asyncio.run(call())


def test_the_runbook_actions_lint_and_migrate(bank: Workspace) -> None:
    out = _run("deploy.lint_migration", _ctx(bank), {"file": TEMPLATE})
    assert (out["errors"], out["warnings"], out["dialect"]) == (0, 0, "sqlite")
    with pytest.raises(ValidationError) as caught:
        _run("deploy.lint_migration", _ctx(bank), {"file": "../../etc/passwd"})
    assert caught.value.exit_code == 2 and "outside the workspace" in caught.value.message
    dry = _run("deploy.migrate", _ctx(bank, dry_run=True), {"file": TEMPLATE, "ticket": "CHG-5"})
    assert dry["would_apply"] == TEMPLATE and dry["errors"] == 0
    r = ob(bank, "migrations", "status", "--json")
    assert json.loads(r.stdout)["migrations"][0]["state"] == "pending"  # the dry run did nothing
    args = {"file": TEMPLATE, "ticket": "CHG-5", "lock_timeout": "2s", "backup": "false"}
    done = _run("deploy.migrate", _ctx(bank), args)
    assert done["status"] == "applied" and done["invariants_ok"] is True
    assert done["lock_timeout_s"] == 2.0 and done["backup"] is None
    with pytest.raises(ValidationError, match="statement_timeout must be a duration"):
        _run("deploy.migrate", _ctx(bank), {**args, "statement_timeout": "forever"})
    from opsbook.config import Settings
    from opsbook.db import open_database

    db = open_database(Settings.from_env().database_url_for(bank.state_dir))
    try:
        rows = db.query("SELECT action, execution_id FROM events WHERE action LIKE 'migration.%'")
    finally:
        db.close()
    assert [(r["action"], r["execution_id"]) for r in rows] == [("migration.applied", "ex-test-1")]
