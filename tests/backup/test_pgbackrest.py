"""Backups of the sandbox ledger on PostgreSQL with pgBackRest (issue 13), on a real sandbox
running its own cluster: full and incremental backups, encrypted, mirrored to the DR location and
verified by restore into a scratch instance; a corrupted file is named, the backup marked bad,
and the restore taken from the DR copy; a wrong key is named; nothing of the key is stored
beside the backups. Through the real CLI, with its exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from opsbook.sandbox import pgcluster
from tests.backup.conftest import ob
from tests.sandbox.harness import Sandbox

pytestmark = pytest.mark.slow


def _take(sb: Sandbox, *extra: str) -> dict:  # type: ignore[type-arg]
    r = ob(sb, "backups", "take", "--json", *extra)
    assert r.returncode == 0, r.stdout + r.stderr
    return json.loads(r.stdout)  # type: ignore[no-any-return]


def test_the_ledger_runs_on_the_sandboxs_own_cluster_with_wal_archiving(pg_sb: Sandbox) -> None:
    reg = pgcluster.load_registry(pg_sb.data_dir)
    primary = reg.current()
    assert primary.role == "primary" and pgcluster.running(reg, primary)
    assert pg_sb.config.database_url == primary.url()
    rows = pgcluster.sql(primary, "SELECT current_setting('archive_mode'), count(*) FROM accounts")
    assert rows[0][0] == "on" and rows[0][1] > 0
    assert "pgbackrest" in pgcluster.sql(primary, "SHOW archive_command")[0][0]
    conf = (pg_sb.data_dir / "pg" / "pgbackrest.conf").read_text()
    key = (pg_sb.ws.state_dir / "secrets" / "backup-encryption-key").read_text().strip()
    assert key not in conf and "cipher-pass" not in conf  # the key is never written beside
    env_file = (pg_sb.ws.root / "environments" / "sandbox.yaml").read_text()
    assert f"host=127.0.0.1:{primary.port}" in env_file  # databases.ledger.url: sql steps


def test_full_and_incremental_backups_are_verified_by_restore(pg_sb: Sandbox) -> None:
    full = _take(pg_sb, "--verify")
    assert full["state"] == "ok" and full["method"] == "pgbackrest-full", full
    assert full["verify_ok"] == 1 and full["verify_result"]["ok"]
    m = full["manifest"]
    assert m["counts_at_start"]["transfers"] <= m["counts_at_stop"]["transfers"]
    restored = full["verify_result"]["restored"]
    assert m["counts_at_start"]["transfers"] <= restored["counts"]["transfers"]
    assert restored["unbalanced_transfers"] == 0
    assert restored["balances_not_matching_entries"] == 0
    assert [c["location"] for c in full["copies"]] == ["primary", "dr"]
    assert all(Path(c["path"]).is_file() for c in full["copies"])
    incr = _take(pg_sb, "--type", "incr", "--verify")
    assert incr["method"] == "pgbackrest-incr" and incr["verify_ok"] == 1, incr
    assert incr["manifest"]["prior"] == m["label"]
    r = ob(pg_sb, "backups", "check", "--json")
    assert r.returncode == 0, r.stdout
    checks = {c["name"]: c for c in json.loads(r.stdout)["checks"]}
    assert checks["copy in the DR location"]["status"] == "ok"
    assert checks["backup minimum size"]["status"] == "ok"
    assert checks["WAL archive"]["status"] == "ok", checks["WAL archive"]


def test_a_corrupted_file_is_named_and_the_dr_copy_restores(pg_sb: Sandbox) -> None:
    b = _take(pg_sb)
    label = b["manifest"]["label"]
    repo = Path(b["copies"][0]["repo"])
    victim = max(
        (repo / "backup" / "ledger" / label / "pg_data" / "base").rglob("*.zst"),
        key=lambda p: p.stat().st_size,
    )
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    r = ob(pg_sb, "backups", "verify", b["id"], "--json")
    assert r.returncode == 1, r.stdout + r.stderr
    out = json.loads(r.stdout)
    assert out["state"] == "bad" and out["verify_ok"] == 0
    problems = " ".join(out["verify_result"]["problems"])
    assert "primary copy" in problems and "checksum invalid" in problems
    assert out["verify_result"]["restored"]["restored_from"] == "dr"  # the DR copy restores
    shown = ob(pg_sb, "backups", "show", b["id"])
    assert "bad" in shown.stdout


def test_a_wrong_key_is_named(pg_sb: Sandbox) -> None:
    b = _take(pg_sb)
    secret = pg_sb.ws.state_dir / "secrets" / "backup-encryption-key"
    good = secret.read_text()
    secret.write_text("ab" * 32 + "\n")
    try:
        r = ob(pg_sb, "backups", "verify", b["id"], "--json")
    finally:
        secret.write_text(good)
    assert r.returncode == 1
    assert "wrong encryption key" in " ".join(json.loads(r.stdout)["verify_result"]["problems"])
