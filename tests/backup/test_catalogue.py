"""Backups of the sandbox ledger on SQLite (issue 13, first slice) on a real sandbox with
traffic: taken online, encrypted, copied to the DR location, verified by restore; a corrupted
copy, a wrong key and a failed backup are each named and the backup marked bad; a restore goes
into a new file only. Through the real CLI, with its exit codes."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from opsbook.sandbox.load import run_load
from tests.sandbox.harness import Sandbox, running_sandbox

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def sb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    with running_sandbox(tmp_path_factory.mktemp("backups") / "ws") as s:
        urls = {x["name"]: x["url"] for x in s.status()["services"]}
        asyncio.run(run_load(urls=urls, rate=50, duration=3))
        yield s


def ob(sb: Sandbox, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "opsbook.cli.main", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "OPSBOOK_WORKSPACE": str(sb.ws.root)},
        timeout=120,
    )


def _take(sb: Sandbox) -> dict:  # type: ignore[type-arg]
    r = ob(sb, "backups", "take", "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)  # type: ignore[no-any-return]


def test_a_backup_is_encrypted_copied_and_verified_by_restore(sb: Sandbox) -> None:
    b = _take(sb)
    assert b["state"] == "ok" and b["method"] == "sqlite-online-backup"
    assert [c["location"] for c in b["copies"]] == ["primary", "dr"]
    stored = Path(b["copies"][0]["path"])
    assert (
        stored.read_bytes().startswith(b"OPSBK1\n") and b"CREATE TABLE" not in stored.read_bytes()
    )
    assert b["manifest"]["counts"]["transfers"] > 50 and b["manifest"]["unbalanced_transfers"] == 0
    key = sb.ws.state_dir / "secrets" / "backup-encryption-key"
    assert key.is_file() and not str(key).startswith(str(stored.parent))  # never beside it
    r = ob(sb, "backups", "verify", b["id"], "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    v = json.loads(r.stdout)
    assert (
        v["verify_ok"] == 1 and v["verify_result"]["restored"]["counts"] == b["manifest"]["counts"]
    )
    assert v["verify_duration_s"] > 0
    listed = json.loads(ob(sb, "backups", "list", "--json").stdout)["backups"]
    assert b["id"] in [x["id"] for x in listed]


def test_a_corrupted_copy_is_named_and_the_backup_marked_bad(sb: Sandbox) -> None:
    b = _take(sb)
    stored = Path(b["copies"][0]["path"])
    data = bytearray(stored.read_bytes())
    data[len(data) // 2] ^= 0xFF
    stored.write_bytes(bytes(data))
    r = ob(sb, "backups", "verify", b["id"], "--json")
    assert r.returncode == 1
    v = json.loads(r.stdout)
    assert v["state"] == "bad"
    assert any("primary copy" in p and "corrupted" in p for p in v["verify_result"]["problems"])
    # the DR copy still restores: a restore from the good copy works
    target = sb.ws.root / "restored" / "ledger.db"
    r = ob(sb, "backups", "restore", b["id"], "--to", str(target))
    assert r.returncode == 1  # the damage is reported, nothing half-restored is left
    assert not target.exists()


def test_a_wrong_key_is_named(sb: Sandbox) -> None:
    b = _take(sb)
    key = sb.ws.state_dir / "secrets" / "backup-encryption-key"
    original = key.read_text()
    key.write_text("00" * 32 + "\n")
    try:
        r = ob(sb, "backups", "verify", b["id"], "--json")
        assert r.returncode == 1
        assert "wrong encryption key" in " ".join(json.loads(r.stdout)["verify_result"]["problems"])
    finally:
        key.write_text(original)


def test_restore_into_a_new_file_only(sb: Sandbox) -> None:
    b = _take(sb)
    target = sb.ws.root / "restore-test" / "ledger.db"
    r = ob(sb, "backups", "restore", b["id"], "--to", str(target), "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["restored"]["counts"] == b["manifest"]["counts"]
    r = ob(sb, "backups", "restore", b["id"], "--to", str(target))
    assert r.returncode == 2 and "never overwrites" in r.stderr


def test_a_failed_backup_is_catalogued_bad_with_its_reason(sb: Sandbox) -> None:
    toml = sb.ws.root / "opsbook.toml"
    original = toml.read_text()
    blocker = sb.ws.root / "not-a-directory"
    blocker.write_text("a file where the DR location should be\n")
    toml.write_text(original + f'\n[backups]\ndr_location = "{blocker.name}"\n')
    try:
        r = ob(sb, "backups", "take")
        assert r.returncode == 1 and "failed" in r.stderr and "Traceback" not in r.stderr
    finally:
        toml.write_text(original)
    bad = [
        x
        for x in json.loads(ob(sb, "backups", "list", "--json").stdout)["backups"]
        if x["state"] == "bad" and x["error"]
    ]
    assert bad and bad[0]["copies"] == []


def test_bad_input(sb: Sandbox) -> None:
    r = ob(sb, "backups", "show", "bk-nope")
    assert r.returncode == 2 and "no backup bk-nope" in r.stderr
    r = ob(sb, "backups", "take", "--retention", "hourly")
    assert r.returncode == 2 and "--retention" in r.stderr
