"""Applying a migration to the sandbox ledger (opsbook.deploy.migrate), on a real SQLite ledger
and on the sandbox's own PostgreSQL cluster (with pgBackRest): a backup first, one transaction
with the timeouts, recorded in schema_migrations; the same file again is a no-op, a changed
file is refused; a lock held elsewhere fails fast naming the table and applies nothing; a
migration that deletes rows or unbalances the ledger is rolled back and named; every apply is
audited."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from opsbook.config import Settings
from opsbook.db import Database, open_database
from opsbook.deploy import migrate
from opsbook.deploy.migrate import MigrationFailed
from opsbook.errors import ConflictError, UsageError
from opsbook.sandbox.ledger import Ledger, seed_customers
from opsbook.workspace import Workspace
from tests.backup.conftest import ob, pg_sb  # noqa: F401 - the PostgreSQL sandbox fixture
from tests.sandbox.harness import Sandbox, make_workspace

EXPAND = "-- expand\nALTER TABLE accounts ADD COLUMN display_name TEXT;\n"


@dataclass
class Env:
    ws: Workspace
    settings: Settings
    db: Database
    ledger_path: Path

    def write(self, name: str, text: str) -> Path:
        folder = self.ws.root / "migrations"
        folder.mkdir(exist_ok=True)
        path = folder / name
        path.write_text(text, encoding="utf-8")
        return path

    def apply(self, path: Path, **kw: Any) -> dict[str, Any]:
        return migrate.apply(
            db=self.db,
            workspace=self.ws,
            settings=self.settings,
            environment="sandbox",
            path=path,
            actor=kw.pop("actor", "dana"),
            ticket=kw.pop("ticket", "CHG-42"),
            **kw,
        )

    def sql(self, query: str) -> list[tuple[Any, ...]]:
        conn = sqlite3.connect(self.ledger_path)
        try:
            return conn.execute(query).fetchall()
        finally:
            conn.close()

    def columns(self, table: str) -> list[str]:
        return [r[1] for r in self.sql(f"PRAGMA table_info({table})")]

    def applied(self) -> list[tuple[Any, ...]]:
        try:
            return self.sql("SELECT version, applied_by, ticket FROM schema_migrations")
        except sqlite3.OperationalError:
            return []

    def audit(self) -> list[tuple[str, str, dict[str, Any]]]:
        rows = self.db.query("SELECT action, subject, payload FROM events ORDER BY id")
        return [
            (str(r["action"]), str(r["subject"]), json.loads(r["payload"]))
            for r in rows
            if str(r["action"]).startswith("migration.")
        ]


@pytest.fixture
def lite(tmp_path: Path) -> Iterator[Env]:
    ws = make_workspace(tmp_path / "ws")
    tgt = migrate.target(workspace=ws, environment="sandbox")
    assert tgt.dialect == "sqlite"
    ledger = Ledger(tgt.url)
    ledger.init_schema()
    seed_customers(ledger)
    ledger.transfer(from_account=3, to_account=4, amount_cents=1234)
    ledger.close()
    settings = Settings.from_env()
    ws.state_dir.mkdir(exist_ok=True)
    db = open_database(settings.database_url_for(ws.state_dir))
    try:
        yield Env(ws, settings, db, tgt.path)
    finally:
        db.close()


# -- SQLite ------------------------------------------------------------------------------------


def test_an_expand_migration_is_backed_up_applied_recorded_checked_and_audited(lite: Env) -> None:
    path = lite.write("0001_account_display_name.sql", EXPAND)
    out = lite.apply(path)
    assert out["status"] == "applied" and out["dialect"] == "sqlite"
    assert out["file"] == "migrations/0001_account_display_name.sql"
    assert "display_name" in lite.columns("accounts")
    assert lite.applied() == [("0001", "dana", "CHG-42")]
    # the backup came first, through the backup catalogue, and is named on the record
    backup = lite.db.one("SELECT id, method, state FROM backups WHERE id = ?", (out["backup"],))
    assert backup is not None and backup["method"] == "sqlite-online-backup"
    assert backup["state"] == "ok"
    assert lite.sql("SELECT backup_id FROM schema_migrations") == [(out["backup"],)]
    assert out["counts_before"]["entries"] == out["counts_after"]["entries"] == 14
    assert out["invariants_ok"] is True and out["invariants"]["total_cents"] == 0
    assert out["running_versions"] == ["1.4.2"]
    [(action, subject, payload)] = lite.audit()
    assert (action, subject) == ("migration.applied", "migration:sandbox:0001")
    assert payload["backup"] == out["backup"] and payload["ticket"] == "CHG-42"


def test_the_same_file_again_is_a_no_op_and_a_changed_file_is_refused(lite: Env) -> None:
    path = lite.write("0001_account_display_name.sql", EXPAND)
    first = lite.apply(path)
    again = lite.apply(path, actor="erin")
    assert again["status"] == "already-applied" and again["backup"] is None
    assert "already applied" in again["message"] and "by dana" in again["message"]
    assert lite.db.query("SELECT id FROM backups") == [{"id": first["backup"]}]
    path.write_text(EXPAND + "-- edited after it was applied\n", encoding="utf-8")
    with pytest.raises(ConflictError) as caught:
        lite.apply(path)
    assert caught.value.exit_code == 2
    assert "an applied migration is never edited" in caught.value.message
    assert "new migration" in (caught.value.hint or "")
    assert [a for a, _, _ in lite.audit()] == [
        "migration.applied",
        "migration.already_applied",
        "migration.refused",
    ]
    assert lite.applied() == [("0001", "dana", "CHG-42")]


def test_a_lint_error_refuses_the_file_before_anything_is_touched(lite: Env) -> None:
    path = lite.write(
        "0002_drop_currency.sql",
        "-- contract too early\n\nALTER TABLE accounts DROP COLUMN currency;\n",
    )
    with pytest.raises(MigrationFailed) as caught:
        lite.apply(path)
    assert caught.value.exit_code == 1
    text = caught.value.render()
    assert "migrations/0002_drop_currency.sql:3:34: drop-column-still-read:" in text
    assert "nothing was applied" in text
    assert "currency" in lite.columns("accounts") and lite.applied() == []
    assert lite.db.query("SELECT id FROM backups") == []
    [(action, _, payload)] = lite.audit()
    assert action == "migration.refused" and payload["reason"] == "lint"
    assert payload["findings"] == ["migrations/0002_drop_currency.sql:3:34: drop-column-still-read"]


def test_a_suppressed_finding_lets_the_reviewed_statement_through(lite: Env) -> None:
    path = lite.write(
        "0003_outbox_sent_at.sql",
        "-- reviewed: CHG-42\n-- lint: ignore drop-column-still-read\n"
        "ALTER TABLE outbox DROP COLUMN sent_at;\n",
    )
    out = lite.apply(path, backup=False)
    assert out["status"] == "applied" and out["backup"] is None and out["errors"] == 0
    assert [f["rule"] for f in out["findings"] if f["suppressed"]] == ["drop-column-still-read"]
    assert "sent_at" not in lite.columns("outbox")
    assert lite.audit()[0][2]["suppressed"] == ["drop-column-still-read"]


def test_a_lock_held_elsewhere_fails_fast_naming_it_and_nothing_is_applied(lite: Env) -> None:
    path = lite.write("0001_account_display_name.sql", EXPAND)
    holder = sqlite3.connect(lite.ledger_path, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")  # another writer in a long transaction
        holder.execute("UPDATE outbox SET status = status")
        with pytest.raises(MigrationFailed) as caught:
            lite.apply(path, lock_timeout=0.3, backup=False)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    text = caught.value.render()
    assert "another session holds a lock on accounts" in text
    assert "nothing was applied" in text and "try again in a quieter moment" in text
    assert caught.value.retryable is True
    assert "display_name" not in lite.columns("accounts") and lite.applied() == []
    assert [a for a, _, _ in lite.audit()] == ["migration.failed"]
    # in a quieter moment it applies
    assert lite.apply(path, backup=False)["status"] == "applied"


def test_a_statement_running_past_statement_timeout_is_interrupted(lite: Env) -> None:
    path = lite.write(
        "0004_slow.sql",
        "ALTER TABLE accounts ADD COLUMN display_name TEXT;\n"
        "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 1000000000)\n"
        "SELECT COUNT(*) FROM n;\n",
    )
    with pytest.raises(MigrationFailed) as caught:
        lite.apply(path, statement_timeout=0.2, backup=False)
    assert caught.value.location is not None and caught.value.location.line == 2
    assert "ran longer than statement_timeout 0.2s" in caught.value.message
    assert "display_name" not in lite.columns("accounts") and lite.applied() == []


def test_a_migration_that_breaks_the_ledger_is_rolled_back_and_named(lite: Env) -> None:
    path = lite.write(
        "0005_cleanup.sql",
        "ALTER TABLE accounts ADD COLUMN display_name TEXT;\n"
        "DELETE FROM entries WHERE id = (SELECT MAX(id) FROM entries);\n",
    )
    before = lite.sql("SELECT COUNT(*), SUM(amount_cents) FROM entries")
    with pytest.raises(MigrationFailed) as caught:
        lite.apply(path, backup=False)
    assert caught.value.exit_code == 1
    msg = caught.value.message
    assert "entries: 14 rows before, 13 after (rows may only be added)" in msg
    assert "the entries sum to -1234 cents, not 0" in msg
    assert "account 4: balance 101234 cents, its entries sum to 100000" in msg
    assert "rolled back" in msg
    assert lite.sql("SELECT COUNT(*), SUM(amount_cents) FROM entries") == before
    assert "display_name" not in lite.columns("accounts") and lite.applied() == []
    [(action, _, payload)] = lite.audit()
    assert action == "migration.failed" and "entries: 14 rows before" in payload["error"]
    # an UPDATE that moves money without entries: counts fine, invariants broken
    bad = lite.write(
        "0006_bonus.sql", "UPDATE accounts SET balance_cents = balance_cents + 1 WHERE id = 3;\n"
    )
    with pytest.raises(MigrationFailed, match="account 3: balance 98767 cents"):
        lite.apply(bad, backup=False)


def test_a_failing_statement_is_named_at_its_line_and_the_file_rolled_back(lite: Env) -> None:
    path = lite.write(
        "0007_typo.sql",
        "ALTER TABLE accounts ADD COLUMN display_name TEXT;\n\n"
        "ALTER TABLE acounts ADD COLUMN x TEXT;\n",
    )
    with pytest.raises(MigrationFailed) as caught:
        lite.apply(path, backup=False)
    assert str(caught.value.location) == "migrations/0007_typo.sql:3:1"
    assert "the statement failed: no such table: acounts" in caught.value.message
    assert "display_name" not in lite.columns("accounts")


def test_status_lists_applied_pending_and_changed_files(lite: Env) -> None:
    assert migrate.status(workspace=lite.ws, settings=lite.settings, environment="sandbox") == []
    one = lite.write("0001_account_display_name.sql", EXPAND)
    lite.write("0002_payments_channel.sql", "ALTER TABLE payments ADD COLUMN channel TEXT;\n")
    lite.write("notes.sql", "-- not a migration: no version in its name\n")
    lite.apply(one, backup=False)
    rows = migrate.status(workspace=lite.ws, settings=lite.settings, environment="sandbox")
    assert [(r["version"], r["state"]) for r in rows] == [("0001", "applied"), ("0002", "pending")]
    assert rows[0]["applied_by"] == "dana" and rows[0]["ticket"] == "CHG-42"
    one.write_text(EXPAND + "-- edited\n", encoding="utf-8")
    rows = migrate.status(workspace=lite.ws, settings=lite.settings, environment="sandbox")
    assert rows[0]["state"] == "changed"


def test_bad_names_and_timeouts_are_usage_errors(lite: Env) -> None:
    with pytest.raises(UsageError) as caught:
        lite.apply(lite.write("add-column.sql", EXPAND))
    assert caught.value.exit_code == 2 and "NNNN_name.sql" in caught.value.message
    with pytest.raises(UsageError, match="no migration file"):
        lite.apply(lite.ws.root / "migrations" / "0009_missing.sql")
    with pytest.raises(UsageError) as caught:
        lite.apply(lite.write("0001_account_display_name.sql", EXPAND), lock_timeout=0)
    assert caught.value.field == "lock_timeout"
    assert lite.applied() == [] and lite.audit() == []


def test_conninfo_turns_the_listener_url_into_a_libpq_one() -> None:
    listener = (
        "postgresql+psycopg://opsbook@/ledger?host=127.0.0.1:5433&host=127.0.0.1:5434"
        "&target_session_attrs=read-write"
    )
    assert migrate.conninfo(listener) == (
        "postgresql://opsbook@127.0.0.1:5433,127.0.0.1:5434/ledger?target_session_attrs=read-write"
    )
    assert migrate.conninfo("postgres://u@h:1/db") == "postgresql://u@h:1/db"


# -- PostgreSQL (the sandbox's own cluster, pgBackRest) ----------------------------------------


def _pg(sb: Sandbox, query: str) -> list[tuple[Any, ...]]:
    import psycopg

    with psycopg.connect(sb.config.database_url, autocommit=True) as conn:
        return conn.execute(query.encode()).fetchall()


def _write(sb: Sandbox, name: str, text: str) -> str:
    folder = sb.ws.root / "migrations"
    folder.mkdir(exist_ok=True)
    (folder / name).write_text(text, encoding="utf-8")
    return f"migrations/{name}"


def _apply(sb: Sandbox, rel: str, *extra: str) -> Any:
    return ob(
        sb, "migrations", "apply", str(sb.ws.root / rel), "--ticket", "CHG-7", "--json", *extra
    )


@pytest.mark.slow
def test_pg_expand_migration_backed_up_by_pgbackrest_and_recorded(pg_sb: Sandbox) -> None:  # noqa: F811
    rel = _write(pg_sb, "0001_account_display_name.sql", EXPAND)
    r = _apply(pg_sb, rel)
    assert r.returncode == 0, r.stdout + r.stderr
    out = json.loads(r.stdout)
    assert out["status"] == "applied" and out["dialect"] == "postgresql"
    assert out["invariants_ok"] is True and out["transactional"] is True
    shown = json.loads(ob(pg_sb, "backups", "show", out["backup"], "--json").stdout)
    assert shown["state"] == "ok" and str(shown["method"]).startswith("pgbackrest")
    assert _pg(
        pg_sb,
        "SELECT 1 FROM information_schema.columns WHERE table_name = 'accounts'"
        " AND column_name = 'display_name'",
    ) == [(1,)]
    assert _pg(pg_sb, "SELECT version, ticket, backup_id FROM schema_migrations") == [
        ("0001", "CHG-7", out["backup"])
    ]
    again = _apply(pg_sb, rel)
    assert again.returncode == 0 and json.loads(again.stdout)["status"] == "already-applied"
    # the running services (1.4.2) still answer: the expand step does not break them
    assert all(s["state"] == "running" for s in pg_sb.status()["services"])


@pytest.mark.slow
def test_pg_a_lock_held_elsewhere_fails_fast_naming_the_table(pg_sb: Sandbox) -> None:  # noqa: F811
    import psycopg

    rel = _write(
        pg_sb, "0002_account_nickname.sql", "ALTER TABLE accounts ADD COLUMN nickname TEXT;\n"
    )
    with psycopg.connect(pg_sb.config.database_url, application_name="long-report") as holder:
        holder.execute(b"SELECT COUNT(*) FROM accounts")  # ACCESS SHARE until the end of its tx
        r = _apply(pg_sb, rel, "--lock-timeout", "500ms", "--no-backup")
        holder.rollback()
    assert r.returncode == 1, r.stdout + r.stderr
    err = json.loads(r.stderr)
    assert "another session holds a lock on accounts" in err["message"]
    assert "nothing was applied" in err["message"] and "long-report" in err["message"]
    assert err["retryable"] is True
    assert _pg(pg_sb, "SELECT COUNT(*) FROM schema_migrations WHERE version = '0002'") == [(0,)]
    assert _pg(
        pg_sb,
        "SELECT COUNT(*) FROM information_schema.columns WHERE column_name = 'nickname'",
    ) == [(0,)]


@pytest.mark.slow
def test_pg_statement_timeout_and_broken_invariants_apply_nothing(pg_sb: Sandbox) -> None:  # noqa: F811
    slow = _write(
        pg_sb,
        "0003_slow.sql",
        "ALTER TABLE payments ADD COLUMN channel TEXT;\nSELECT pg_sleep(60);\n",
    )
    r = _apply(pg_sb, slow, "--statement-timeout", "1s", "--no-backup")
    assert r.returncode == 1, r.stdout + r.stderr
    err = json.loads(r.stderr)
    assert "ran longer than statement_timeout 1s" in err["message"]
    assert err["location"] == "migrations/0003_slow.sql:2:1"
    bonus = _write(
        pg_sb,
        "0004_bonus.sql",
        "UPDATE accounts SET balance_cents = balance_cents + 100 WHERE id = 3;\n",
    )
    balance = _pg(pg_sb, "SELECT balance_cents FROM accounts WHERE id = 3")
    r = _apply(pg_sb, bonus, "--no-backup")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "account 3: balance" in json.loads(r.stderr)["message"]
    assert _pg(pg_sb, "SELECT balance_cents FROM accounts WHERE id = 3") == balance
    assert _pg(
        pg_sb,
        "SELECT COUNT(*) FROM schema_migrations WHERE version IN ('0003', '0004')",
    ) == [(0,)]


@pytest.mark.slow
def test_pg_a_concurrent_index_file_is_applied_outside_a_transaction(pg_sb: Sandbox) -> None:  # noqa: F811
    rel = _write(
        pg_sb,
        "0005_accounts_by_owner.sql",
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS accounts_by_owner ON accounts (owner);\n",
    )
    lint = ob(pg_sb, "migrations", "lint", str(pg_sb.ws.root / rel), "--json")
    assert lint.returncode == 0 and json.loads(lint.stdout)["errors"] == 0, lint.stdout
    r = _apply(pg_sb, rel, "--no-backup")
    assert r.returncode == 0, r.stdout + r.stderr
    assert json.loads(r.stdout)["transactional"] is False
    assert _pg(
        pg_sb,
        "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
        " WHERE c.relname = 'accounts_by_owner'",
    ) == [(True,)]
