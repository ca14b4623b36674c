"""Azure SQL point-in-time restore and failover-group commands (issue 13, production's shape):
exact argv in a dry run, and real runs (subprocesses, no shell) of a fake ``az`` first on PATH
that answers from recorded responses (tests/backup/recordings_az) and logs every argv."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from opsbook.backup.azuresql import AzCommandFailed, AzureSqlRecovery, parse_target
from opsbook.db import Database
from opsbook.errors import OpsbookError, UsageError, ValidationError

HERE = Path(__file__).parent
TEMPLATE = HERE.parents[1] / "src" / "opsbook" / "workspace" / "templates" / "environments"

RG = "banking-platform-prod-rg"
SUB = "banking-platform-production"
PRIMARY = "banking-platform-prod-sql"
DR = "banking-platform-dr-sql"
FOG = "banking-platform-prod-fog"
NOW = datetime(2026, 12, 4, 6, 0, tzinfo=UTC)
TARGET = datetime(2026, 12, 4, 3, 15, tzinfo=UTC)

WINDOW = [
    "az", "sql", "db", "show", "--resource-group", RG, "--server", PRIMARY, "--name", "ledger",
    "--subscription", SUB, "--query", "earliestRestoreDate", "-o", "tsv",
]  # fmt: skip
RESTORE = [
    "az", "sql", "db", "restore", "--resource-group", RG, "--server", PRIMARY, "--name", "ledger",
    "--dest-name", "ledger-pitr-202612040315", "--time", "2026-12-04T03:15:00Z",
    "--subscription", SUB,
]  # fmt: skip
RESTORED_ONLINE = [
    "az", "sql", "db", "show", "--resource-group", RG, "--server", PRIMARY,
    "--name", "ledger-pitr-202612040315", "--subscription", SUB, "--query", "status", "-o", "tsv",
]  # fmt: skip


@dataclass
class Recorded:
    calls_file: Path

    def calls(self) -> list[list[str]]:
        if not self.calls_file.exists():
            return []
        return [json.loads(line) for line in self.calls_file.read_text().splitlines()]


@pytest.fixture
def recorded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Recorded:
    """``az`` answering from tests/backup/recordings_az, first on PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "az"
    script.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{HERE / "recorded_az.py"}" "$0" "$@"\n')
    script.chmod(0o755)
    calls = tmp_path / "calls.jsonl"
    monkeypatch.setenv("PATH", f"{bin_dir}:{Path(sys.executable).parent}:/usr/bin:/bin")
    monkeypatch.setenv("OPSBOOK_RECORDED_CALLS", str(calls))
    return Recorded(calls)


@pytest.fixture
def production() -> dict[str, Any]:
    """The production environment exactly as `opsbook init` writes it."""
    data: dict[str, Any] = yaml.safe_load((TEMPLATE / "production.yaml").read_text())
    return data


def azure(env: dict[str, Any], *, dry_run: bool = False) -> AzureSqlRecovery:
    return AzureSqlRecovery(environment=env, dry_run=dry_run, clock=lambda: NOW)


def test_dry_run_plans_are_the_exact_commands(
    production: dict[str, Any], recorded: Recorded
) -> None:
    az = azure(production, dry_run=True)
    assert az.restore_plan(target_time=TARGET) == [RESTORE, RESTORED_ONLINE]
    assert az.restore_plan(target_time=TARGET, new_name="ledger-before-bad-batch")[0][10:12] == [
        "--dest-name",
        "ledger-before-bad-batch",
    ]
    show_dr = [
        "az", "sql", "failover-group", "show", "--resource-group", RG, "--server", DR,
        "--name", FOG, "--subscription", SUB, "--query", "replicationRole", "-o", "tsv",
    ]  # fmt: skip
    set_primary_dr = [
        "az", "sql", "failover-group", "set-primary", "--resource-group", RG,
        "--server", DR, "--name", FOG, "--subscription", SUB,
    ]  # fmt: skip
    assert az.failover_plan() == [set_primary_dr, show_dr]
    assert az.failover_plan(allow_data_loss=True)[0] == [
        "az", "sql", "failover-group", "set-primary", "--resource-group", RG,
        "--server", DR, "--name", FOG, "--allow-data-loss", "--subscription", SUB,
    ]  # fmt: skip
    failback = az.failback_plan()
    assert failback[0][4:8] == ["--resource-group", RG, "--server", PRIMARY]
    assert "--allow-data-loss" not in failback[0]
    assert failback[1][7] == PRIMARY
    ran = az.run(az.failover_plan(allow_data_loss=True))
    assert [r["dry_run"] for r in ran] == [True, True]
    assert ran[0]["command"] == (
        f"az sql failover-group set-primary --resource-group {RG} --server {DR} --name {FOG} "
        f"--allow-data-loss --subscription {SUB}"
    )
    window = az.restore_window()
    assert window["earliest"] is None and window["latest"] == "2026-12-04T06:00:00Z"
    assert window["would_run"].endswith("--query earliestRestoreDate -o tsv")
    assert az.replication_lag()["would_run"].startswith(
        f"az sql db replica list-links --resource-group {RG} --server {PRIMARY} --name ledger"
    )
    assert recorded.calls() == []  # a dry run runs nothing, not even a read


def test_a_restore_runs_the_recorded_commands(
    production: dict[str, Any], recorded: Recorded, sqlite_db: Database
) -> None:
    az = azure(production)
    window = az.restore_window()
    assert window["earliest"] == "2026-11-27T05:10:12Z"
    plan = az.restore_plan(target_time=TARGET)
    results = az.run(plan, db=sqlite_db, actor="dba")
    assert [r["argv"] for r in results] == [RESTORE, RESTORED_ONLINE]
    assert [r["exit"] for r in results] == [0, 0]
    assert json.loads(results[0]["stdout"])["name"] == "ledger-pitr-202612040315"
    assert results[1]["stdout"].strip() == "Online"
    assert all(r["took_s"] >= 0 for r in results)
    # the window was read twice (restore_window, then restore_plan's check), then the plan ran
    assert recorded.calls() == [WINDOW, WINDOW, RESTORE, RESTORED_ONLINE]
    row = sqlite_db.one("SELECT actor, action, subject, payload FROM events ORDER BY id DESC")
    assert row is not None
    assert (row["actor"], row["action"]) == ("dba", "backup.azuresql.ran")
    assert row["subject"] == f"azuresql:{PRIMARY}/ledger"
    assert [c["exit"] for c in json.loads(row["payload"])["commands"]] == [0, 0]


def test_failover_and_failback_run_against_the_right_servers(
    production: dict[str, Any], recorded: Recorded
) -> None:
    az = azure(production)
    results = az.run(az.failover_plan(allow_data_loss=True))
    assert [r["stdout"].strip() for r in results] == ["", "Primary"]
    az.run(az.failback_plan())
    servers = [c[c.index("--server") + 1] for c in recorded.calls()]
    assert servers == [DR, DR, PRIMARY, PRIMARY]
    assert "--allow-data-loss" in recorded.calls()[0]
    assert "--allow-data-loss" not in recorded.calls()[2]


def test_replication_state_from_the_replication_links(
    production: dict[str, Any], recorded: Recorded
) -> None:
    lag = azure(production).replication_lag()
    assert lag["replication_state"] == "CATCH_UP" and lag["healthy"] is True
    assert (lag["role"], lag["partner_role"], lag["partner_server"]) == ("Primary", "Secondary", DR)
    assert lag["replication_mode"] == "ASYNC" and lag["percent_complete"] == 100
    assert lag["lag_seconds"] is None  # ARM has no seconds-behind; the T-SQL is given
    assert "replication_lag_sec" in lag["lag_seconds_query"]
    # a DR server the link does not go to is reported, not guessed
    other = {**production, "databases": {**production["databases"], "dr": {"server": "elsewhere"}}}
    missing = azure(other).replication_lag()
    assert missing["healthy"] is False and "no replication link" in missing["reason"]


def test_a_target_in_the_future_is_refused_before_anything_runs(
    production: dict[str, Any], recorded: Recorded
) -> None:
    with pytest.raises(UsageError) as err:
        azure(production).restore_plan(target_time=datetime(2026, 12, 4, 7, 0, tzinfo=UTC))
    assert err.value.field == "--to" and err.value.exit_code == 2
    assert "in the future" in err.value.message
    assert recorded.calls() == []


def test_a_target_before_the_window_is_refused_and_nothing_is_restored(
    production: dict[str, Any], recorded: Recorded
) -> None:
    with pytest.raises(UsageError) as err:
        azure(production).restore_plan(target_time=datetime(2026, 11, 20, 0, 0, tzinfo=UTC))
    assert err.value.field == "--to" and err.value.exit_code == 2
    assert "earliest restore point 2026-11-27T05:10:12Z" in err.value.message
    assert recorded.calls() == [WINDOW]  # only the read of the window: no restore ran


def test_a_failing_az_command_is_reported_with_its_stderr(
    production: dict[str, Any], recorded: Recorded, sqlite_db: Database
) -> None:
    az = azure(production)
    plan = az.restore_plan(target_time=TARGET, new_name="ledger-before-bad-batch")
    with pytest.raises(AzCommandFailed) as err:
        az.run(plan, db=sqlite_db, actor="dba")
    assert err.value.exit_code == 1
    assert "az sql db restore" in err.value.message and "exit 1" in err.value.message
    assert "DatabaseAlreadyExists" in err.value.message
    assert [r["exit"] for r in err.value.results] == [1]
    assert recorded.calls()[-1][:4] == ["az", "sql", "db", "restore"]  # it stopped there
    row = sqlite_db.one("SELECT action, payload FROM events ORDER BY id DESC")
    assert row is not None and row["action"] == "backup.azuresql.failed"
    assert "DatabaseAlreadyExists" in json.loads(row["payload"])["error"]


def test_a_check_that_does_not_read_as_expected_fails(
    production: dict[str, Any], recorded: Recorded
) -> None:
    az = azure(production)
    plan = az.restore_plan(target_time=TARGET, new_name="ledger-still-restoring")
    with pytest.raises(AzCommandFailed) as err:
        az.run(plan)
    assert "'Restoring', expected 'Online'" in err.value.message and err.value.retryable
    assert [r["exit"] for r in err.value.results] == [0, 0]


@pytest.mark.parametrize(
    ("drop", "key", "plan"),
    [
        (("failover_group",), "failover_group", "failover_plan"),
        (("databases", "dr", "server"), "databases.dr.server", "failover_plan"),
        (("databases", "primary", "server"), "databases.primary.server", "failback_plan"),
        (("resource_group",), "resource_group", "failover_plan"),
        (("subscription",), "subscription", "failback_plan"),
    ],
)
def test_a_missing_config_key_is_named(
    production: dict[str, Any], recorded: Recorded, drop: tuple[str, ...], key: str, plan: str
) -> None:
    env = json.loads(json.dumps(production))
    node = env
    for part in drop[:-1]:
        node = node[part]
    del node[drop[-1]]
    with pytest.raises(ValidationError) as err:
        getattr(azure(env, dry_run=True), plan)()
    assert err.value.field == key and f"`{key}`" in err.value.message
    assert err.value.exit_code == 2
    assert str(err.value.location) == "environments/production.yaml"
    assert err.value.render().startswith("environments/production.yaml: ")
    assert recorded.calls() == []


def test_a_restore_needs_no_failover_group(production: dict[str, Any], recorded: Recorded) -> None:
    env = {k: v for k, v in production.items() if k != "failover_group"}
    az = azure(env, dry_run=True)
    assert az.restore_plan(target_time=TARGET)[0] == RESTORE
    assert az.describe()["failover_group"] is None
    no_db = json.loads(json.dumps(production))
    del no_db["databases"]["ledger"]["database"]
    with pytest.raises(ValidationError) as err:
        azure(no_db, dry_run=True).restore_plan(target_time=TARGET)
    assert err.value.field == "databases.ledger.database"


def test_bad_new_names_and_times_are_usage_errors(
    production: dict[str, Any], recorded: Recorded
) -> None:
    az = azure(production, dry_run=True)
    for bad in ("ledger", "a/b", "x" * 129, "trailing."):
        with pytest.raises(UsageError) as err:
            az.restore_plan(target_time=TARGET, new_name=bad)
        assert err.value.field == "--new-name"
    with pytest.raises(UsageError) as err:
        az.restore_plan(target_time=datetime(2026, 12, 4, 3, 15))  # no zone
    assert err.value.field == "--to"
    assert parse_target("2026-12-04T04:15:00+01:00") == TARGET
    for text in ("2026-12-04T03:15:00", "yesterday"):
        with pytest.raises(UsageError) as err:
            parse_target(text)
        assert err.value.field == "--to"
    assert recorded.calls() == []


def test_a_missing_az_is_named_and_the_attempt_audited(
    production: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sqlite_db: Database
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    az = AzureSqlRecovery(environment=production, clock=lambda: NOW)
    with pytest.raises(OpsbookError) as err:
        az.run(az.failback_plan(), db=sqlite_db, actor="dba")
    assert "az is not installed" in err.value.message and "az login" in (err.value.hint or "")
    row = sqlite_db.one("SELECT action FROM events ORDER BY id DESC")
    assert row is not None and row["action"] == "backup.azuresql.failed"


def test_failover_status_names_the_primary(production: dict[str, Any], recorded: Recorded) -> None:
    status = azure(production).failover_status()
    assert status["primary_server"] == PRIMARY
    assert status["roles"] == {DR: "Secondary", PRIMARY: "Primary"}
    assert status["replication_state"] == "CATCH_UP" and status["databases"] == ["ledger"]
    assert status["failover_policy"] == "Manual"
    show = [
        "az", "sql", "failover-group", "show", "--resource-group", RG, "--server", DR,
        "--name", FOG, "--subscription", SUB, "-o", "json",
    ]  # fmt: skip
    assert recorded.calls() == [show]
    assert azure(production, dry_run=True).failover_status()["would_run"].endswith("-o json")


def test_after_a_failover_the_restore_runs_on_the_server_that_is_primary(
    production: dict[str, Any], recorded: Recorded
) -> None:
    az = azure(production, dry_run=True)
    plan = az.restore_plan(target_time=TARGET, server=DR)
    assert [argv[argv.index("--server") + 1] for argv in plan] == [DR, DR]
    assert az.restore_window(server=DR)["would_run"].split()[7] == DR
    assert recorded.calls() == []


def test_the_window_start_is_rounded_up_to_a_whole_second(
    production: dict[str, Any], recorded: Recorded
) -> None:
    az = azure(production)
    # earliestRestoreDate is 05:10:11.273: 05:10:11 cannot be restored, 05:10:12 can
    assert az.restore_window()["earliest"] == "2026-11-27T05:10:12Z"
    with pytest.raises(UsageError):
        az.check_target(target_time=datetime(2026, 11, 27, 5, 10, 11, 500000, tzinfo=UTC))
    az.check_target(target_time=datetime(2026, 11, 27, 5, 10, 12, tzinfo=UTC))


def test_a_command_past_its_timeout_is_stopped_and_named(
    production: dict[str, Any], recorded: Recorded
) -> None:
    az = AzureSqlRecovery(environment=production, clock=lambda: NOW, timeout=0.5)
    plan = az.restore_plan(target_time=TARGET, new_name="ledger-slow")
    with pytest.raises(AzCommandFailed) as err:
        az.run(plan)
    assert "did not finish within 0.5s" in err.value.message and err.value.retryable
    assert "az sql db op list" in (err.value.hint or "")
    assert [r["exit"] for r in err.value.results] == [None]  # the status check never ran


def test_only_az_commands_run(production: dict[str, Any], recorded: Recorded) -> None:
    with pytest.raises(UsageError):
        azure(production).run([["sh", "-c", "echo hi"]])
    assert recorded.calls() == []
