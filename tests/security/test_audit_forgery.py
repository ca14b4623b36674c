"""Issue 16 §1: the audit trail must survive the person who can write to the database.

Each attack is the short script of the issue, run with plain ``sqlite3`` and ``hashlib`` against
the workspace's database (what a database writer can do: rewrite rows, recompute every hash,
repoint ``audit_head``). Before the signed checkpoints each one passed ``opsbook audit verify``;
now each fails (exit 1) naming what no signed checkpoint vouches for. The records are written
the way opsbook writes them (``audit.record``, then the writer vouches for its own records with
a signed checkpoint, as a CLI command does when it ends), and checked by the real CLI.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from opsbook import audit
from opsbook.config import Settings
from opsbook.db import Database, open_database
from opsbook.workspace.init import init_workspace

OPSBOOK = [sys.executable, "-m", "opsbook.cli.main"]
APPROVALS = (40, 120)
DENIED = 97


@pytest.fixture
def workspace(tmp_path: Path) -> Iterator[Path]:
    root = tmp_path / "ws"
    init_workspace(target=root)
    db = _db(root)
    cfg = _cfg(root)
    denied = 0
    for i in range(1, 241):
        if i in APPROVALS:
            audit.record(
                db=db,
                actor="alice",
                action="execution.approval.granted",
                subject=f"execution:e{i}/step:approve",
                payload={"approver": "alice", "comment": "change CAB-42"},
                execution_id=f"e{i}",
            )
        elif i % 2 == 0 and denied < DENIED:
            denied += 1
            audit.record(
                db=db,
                actor=f"user{i % 7}",
                action="access.denied",
                subject="api:/api/v1/executions",
                payload={"role": "viewer", "needed": "operator"},
            )
        else:
            audit.record(db=db, actor="bob", action="execution.step.succeeded", subject=f"step:{i}")
        if i % 60 == 0:  # four "commands", each vouching for its own records as it ends
            assert audit.sign_own(db=db, cfg=cfg, signer="cli") == i
    db.close()
    assert denied == DENIED
    yield root


def _db(root: Path) -> Database:
    return open_database(Settings().database_url_for(root / ".opsbook"))


def _cfg(root: Path) -> audit.WitnessConfig:
    return audit.config_for(workspace_root=root, settings=Settings())


def _verify(root: Path, *args: str) -> tuple[int, dict[str, object], str]:
    res = subprocess.run(
        [*OPSBOOK, "audit", "verify", "--json", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "OPSBOOK_WORKSPACE": str(root)},
        check=False,
        timeout=120,
    )
    assert "Traceback" not in res.stderr, res.stderr
    return res.returncode, json.loads(res.stdout), res.stderr


# -- the attacker's script: sqlite3 and hashlib, no opsbook -----------------------------------


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _con(root: Path) -> sqlite3.Connection:
    con = sqlite3.connect(root / ".opsbook" / "opsbook.db")
    con.row_factory = sqlite3.Row
    return con


def _recompute(con: sqlite3.Connection) -> None:
    """Renumber 1, 2, 3, … and recompute every hash and the head: a self-consistent chain."""
    rows = [dict(r) for r in con.execute("SELECT * FROM events ORDER BY id")]
    con.execute("DELETE FROM events")
    prev = ""
    for n, r in enumerate(rows, 1):
        r["id"], r["prev_hash"] = n, prev
        r["payload_digest"] = _sha(r["payload"])
        material = [
            prev,
            str(n),
            r["ts"],
            r["actor"],
            r["action"],
            r["subject"],
            r["execution_id"] or "",
            r["payload_digest"],
        ]
        r["hash"] = prev = _sha("|".join(material))
        cols = ", ".join(r)
        con.execute(
            f"INSERT INTO events ({cols}) VALUES ({', '.join('?' for _ in r)})",
            list(r.values()),
        )
    con.execute("UPDATE audit_head SET last_id = ?, last_hash = ?", (len(rows), prev))
    con.commit()


def test_the_untouched_trail_verifies_against_its_checkpoints(workspace: Path) -> None:
    code, report, _ = _verify(workspace)
    assert code == 0 and report["ok"] and report["status"] == "ok"
    assert report["checked"] == 240 and report["checkpoint_id"] == 240
    assert report["checkpoints_checked"] == 4 and report["first_bad_id"] is None


def test_deleting_the_newest_20_and_repointing_the_head_is_detected(workspace: Path) -> None:
    con = _con(workspace)
    con.execute("DELETE FROM events WHERE id > 220")
    last = con.execute("SELECT hash FROM events WHERE id = 220").fetchone()[0]
    con.execute("UPDATE audit_head SET last_id = 220, last_hash = ?", (last,))
    con.commit()
    code, report, _ = _verify(workspace)
    assert code == 1 and not report["ok"] and report["first_bad_id"] == 221
    assert "records 221–240 are missing (deleted)" in str(report["problem"])


def test_an_appended_correctly_hashed_forged_record_is_detected(workspace: Path) -> None:
    con = _con(workspace)
    prev = con.execute("SELECT last_hash FROM audit_head").fetchone()[0]
    ts = datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
    payload = json.dumps({"approver": "mallory"})
    digest = _sha(payload)
    h = _sha("|".join([prev, "241", ts, "mallory", "execution.approval.granted", "x", "", digest]))
    con.execute(
        "INSERT INTO events (id, ts, actor, action, subject, execution_id, payload,"
        " payload_digest, prev_hash, hash)"
        " VALUES (241, ?, 'mallory', 'execution.approval.granted', 'x', NULL, ?, ?, ?, ?)",
        (ts, payload, digest, prev, h),
    )
    con.execute("UPDATE audit_head SET last_id = 241, last_hash = ?", (h,))
    con.commit()
    code, report, _ = _verify(workspace)
    assert code == 1 and report["status"] == "unwitnessed" and report["first_bad_id"] == 241
    assert report["unwitnessed"] == [[241, 241]]
    assert "record 241 is not covered by a signed checkpoint" in str(report["problem"])
    # A live server's tail may be accepted for a while; the forgery is still named, and once
    # it is older than the window it fails again.
    code, report, _ = _verify(workspace, "--allow-unwitnessed-tail", "3600")
    assert code == 0 and report["unwitnessed"] == [[241, 241]] and report["warnings"]
    old = (datetime.now(UTC) - timedelta(hours=2)).isoformat().replace("+00:00", "Z")
    con.execute("UPDATE events SET ts = ? WHERE id = 241", (old,))
    _recompute(con)
    code, report, _ = _verify(workspace, "--allow-unwitnessed-tail", "3600")
    assert code == 1 and report["first_bad_id"] == 241


def test_a_forged_record_dated_in_the_future_is_never_young_enough(workspace: Path) -> None:
    con = _con(workspace)
    future = (datetime.now(UTC) + timedelta(days=1)).isoformat().replace("+00:00", "Z")
    con.execute(
        "INSERT INTO events (id, ts, actor, action, subject, execution_id, payload,"
        " payload_digest, prev_hash, hash)"
        " VALUES (241, ?, 'mallory', 'x', 'y', NULL, '{}', '', '', '')",
        (future,),
    )
    _recompute(con)
    code, report, _ = _verify(workspace, "--allow-unwitnessed-tail", "3600")
    assert code == 1 and report["first_bad_id"] == 241


def test_changing_an_approver_and_recomputing_every_later_hash_is_detected(
    workspace: Path,
) -> None:
    con = _con(workspace)
    forged = json.dumps({"approver": "mallory", "comment": "change CAB-42"}, sort_keys=True)
    con.execute("UPDATE events SET actor = 'mallory', payload = ? WHERE id = 120", (forged,))
    _recompute(con)
    code, report, _ = _verify(workspace)
    assert code == 1 and report["status"] == "broken"
    # Checkpoints at 60 and 120 were signed; 60 still matches, so the change is after it.
    assert report["first_bad_id"] == 61
    assert "record 120 does not match its signed checkpoint" in str(report["problem"])


@pytest.mark.parametrize("how_many", ["one", "all"])
def test_deleting_access_denied_records_and_recomputing_is_detected(
    workspace: Path, how_many: str
) -> None:
    con = _con(workspace)
    ids = [r[0] for r in con.execute("SELECT id FROM events WHERE action = 'access.denied'")]
    assert len(ids) == DENIED
    doomed = ids[-1:] if how_many == "one" else ids
    con.executemany("DELETE FROM events WHERE id = ?", [(i,) for i in doomed])
    _recompute(con)
    code, report, _ = _verify(workspace)
    assert code == 1 and not report["ok"] and report["status"] == "broken"
    assert report["first_bad_id"] is not None


def test_a_rewritten_witness_line_is_reported_with_its_line_number(workspace: Path) -> None:
    witness = _cfg(workspace).witness
    lines = witness.read_text().splitlines()
    line = json.loads(lines[1])
    line["id"] = 100  # a file-system writer moves a checkpoint back
    lines[1] = json.dumps(line)
    lines.insert(2, "{not json")
    witness.write_text("\n".join(lines) + "\n")
    code, report, _ = _verify(workspace)
    assert code == 1 and report["status"] == "broken"
    assert "line 2: the signature does not verify" in str(report["problem"])
    assert "1 more bad lines" in str(report["problem"])
    text = subprocess.run(
        [*OPSBOOK, "audit", "verify"],
        capture_output=True,
        text=True,
        env={**os.environ, "OPSBOOK_WORKSPACE": str(workspace)},
        check=False,
    )
    assert text.returncode == 1 and "Traceback" not in text.stderr
    assert "witness" in text.stderr and "line 2" in text.stderr


def test_a_removed_witness_is_detected_while_the_key_file_remains(workspace: Path) -> None:
    _cfg(workspace).witness.unlink()
    code, report, _ = _verify(workspace)
    assert code == 1 and "the witness removed" in str(report["problem"])
    # The next writer does not adopt the chain as a first use would: the key file says
    # checkpoints were signed before.
    db = _db(workspace)
    audit.record(db=db, actor="bob", action="thing.changed", subject="after")
    assert audit.sign_own(db=db, cfg=_cfg(workspace), signer="cli") == 241
    db.close()
    code, report, _ = _verify(workspace)
    assert code == 1 and report["unwitnessed"] == [[1, 240]]


def test_a_workspace_without_checkpoints_verifies_with_a_clear_status(tmp_path: Path) -> None:
    """Upgrade: a chain written before checkpoints existed is not a failure; the first
    `audit checkpoint` adopts it (trust on first use), after which rewrites are caught."""
    root = tmp_path / "old"
    init_workspace(target=root)
    db = _db(root)
    for i in range(5):
        audit.record(db=db, actor="old", action="thing.changed", subject=f"t:{i}")
    audit._log.take_own()  # written before this release: nobody signed them
    db.close()
    code, report, _ = _verify(root)
    assert code == 0 and report["status"] == "no-checkpoint" and report["checked"] == 5
    assert "no signed checkpoint yet" in str(report["warnings"])
    env = {**os.environ, "OPSBOOK_WORKSPACE": str(root)}
    res = subprocess.run(
        [*OPSBOOK, "audit", "checkpoint"], capture_output=True, text=True, env=env, check=False
    )
    assert res.returncode == 0 and "adopts the chain" in res.stdout, res.stderr
    key = _cfg(root).key_file
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    assert oct(key.parent.stat().st_mode & 0o777) == "0o700"
    code, report, _ = _verify(root)
    assert code == 0 and report["status"] == "ok" and report["checkpoint_id"] == 5
    con = _con(root)
    con.execute("UPDATE events SET actor = 'mallory' WHERE id = 2")
    _recompute(con)
    code, report, _ = _verify(root)
    assert code == 1 and report["first_bad_id"] == 1


def test_a_cli_command_that_writes_vouches_for_its_records(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    init_workspace(target=root)
    env = {**os.environ, "OPSBOOK_WORKSPACE": str(root)}
    for name in ("alice", "bob"):
        res = subprocess.run(
            [*OPSBOOK, "users", "add", name, "--role", "operator"],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
        assert res.returncode == 0, res.stderr
    code, report, _ = _verify(root)
    assert code == 0 and report["status"] == "ok" and report["unwitnessed"] == []
    assert report["checkpoint_id"] == report["checked"] and report["key_id"]


def test_records_a_writer_never_signed_can_be_accepted_after_review(workspace: Path) -> None:
    db = _db(workspace)
    audit.record(db=db, actor="crashed", action="thing.changed", subject="t")
    audit._log.take_own()  # the writer died before signing
    db.close()
    code, report, _ = _verify(workspace)
    assert code == 1 and report["unwitnessed"] == [[241, 241]]
    env = {**os.environ, "OPSBOOK_WORKSPACE": str(workspace)}
    res = subprocess.run(
        [*OPSBOOK, "audit", "checkpoint", "--accept-unwitnessed", "--as", "carol"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert res.returncode == 0, res.stderr
    code, report, _ = _verify(workspace)
    assert code == 0 and report["checked"] == 242, report
    con = _con(workspace)
    row = con.execute("SELECT actor, action FROM events WHERE id = 242").fetchone()
    assert tuple(row) == ("carol", "audit.records.accepted")


def test_doctor_checks_the_checkpoints_the_key_and_the_witness(workspace: Path) -> None:
    def checks() -> dict[str, dict[str, str]]:
        res = subprocess.run(
            [*OPSBOOK, "doctor", "--json"],
            capture_output=True,
            text=True,
            env={**os.environ, "OPSBOOK_WORKSPACE": str(workspace)},
            check=False,
            timeout=120,
        )
        assert "Traceback" not in res.stderr, res.stderr
        return {c["name"]: c for c in json.loads(res.stdout)["checks"]}

    found = checks()
    assert found["audit checkpoints"]["status"] == "ok"
    detail = found["audit checkpoints"]["detail"]
    assert re.fullmatch(
        r"(1 signed checkpoint matches|\d+ signed checkpoints match) \(key \S+\)", detail
    )
    assert "None" not in detail
    assert found["audit key"]["status"] == "ok" and found["audit witness"]["status"] == "ok"
    cfg = _cfg(workspace)
    cfg.key_file.chmod(0o644)
    cfg.witness.chmod(0o666)
    con = _con(workspace)
    con.execute("UPDATE events SET actor = 'mallory' WHERE id = 7")
    _recompute(con)
    found = checks()
    assert found["audit checkpoints"]["status"] == "failed"
    assert found["audit key"]["hint"] == f"chmod 600 {cfg.key_file}"
    assert found["audit witness"]["hint"] == f"chmod go-w {cfg.witness}"


def test_the_key_can_come_from_the_secret_store(tmp_path: Path) -> None:
    """`audit-signing-key` from a secret provider (here the environment): no key file is
    written, and a checkpoint made with another key does not verify."""
    root = tmp_path / "ws"
    init_workspace(target=root)
    seed = "11" * 32
    env = {**os.environ, "OPSBOOK_WORKSPACE": str(root), "OPSBOOK_SECRET_AUDIT_SIGNING_KEY": seed}

    def ob(*args: str, **more: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*OPSBOOK, *args], capture_output=True, text=True, env={**env, **more}, check=False
        )

    assert ob("users", "add", "alice", "--role", "operator").returncode == 0
    assert not _cfg(root).key_file.exists()
    ok = ob("audit", "verify", "--json")
    assert ok.returncode == 0 and json.loads(ok.stdout)["status"] == "ok", ok.stderr
    other = ob("audit", "verify", "--json", OPSBOOK_SECRET_AUDIT_SIGNING_KEY="22" * 32)
    assert other.returncode == 1 and "signed by key" in json.loads(other.stdout)["problem"]
    bad = ob("audit", "verify", OPSBOOK_SECRET_AUDIT_SIGNING_KEY="not a key")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "audit signing key" in bad.stderr and "not a key" not in bad.stderr


def test_a_checkpoint_that_cannot_be_written_never_loses_the_command_or_its_record(
    tmp_path: Path,
) -> None:
    root = tmp_path / "ws"
    init_workspace(target=root)
    env = {
        **os.environ,
        "OPSBOOK_WORKSPACE": str(root),
        "OPSBOOK_AUDIT_WITNESS": "/proc/opsbook-nowhere/witness.jsonl",
    }
    res = subprocess.run(
        [*OPSBOOK, "users", "add", "alice", "--role", "operator"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert res.returncode == 0 and "Traceback" not in res.stderr
    assert "warning: audit checkpoint not signed" in res.stderr
    con = _con(root)
    assert con.execute("SELECT count(*) FROM events").fetchone()[0] >= 1
