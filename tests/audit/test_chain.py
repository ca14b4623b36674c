from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from opsbook import audit
from opsbook.audit import WitnessConfig, sign_checkpoint
from opsbook.audit._export import export
from opsbook.db import Database


def _fill(db: Database, n: int = 5) -> None:
    for i in range(n):
        audit.record(
            db=db,
            actor=f"user{i % 2}",
            action="test.thing.changed",
            subject=f"thing:{i}",
            payload={"i": i},
        )


def test_clean_chain_verifies(any_db: Database) -> None:
    _fill(any_db)
    report = audit.verify(db=any_db)
    assert report.ok and report.checked == 5


def test_altered_record_is_named(any_db: Database) -> None:
    _fill(any_db)
    any_db.execute("UPDATE events SET actor = 'mallory' WHERE id = 3")
    report = audit.verify(db=any_db)
    assert not report.ok and report.first_bad_id == 3


def test_altered_payload_is_named(any_db: Database) -> None:
    _fill(any_db)
    any_db.execute("""UPDATE events SET payload = '{"i":99}' WHERE id = 2""")
    report = audit.verify(db=any_db)
    assert not report.ok and report.first_bad_id == 2 and "payload" in (report.problem or "")


def test_deleted_record_is_named(any_db: Database) -> None:
    _fill(any_db)
    any_db.execute("DELETE FROM events WHERE id = 4")
    report = audit.verify(db=any_db)
    assert not report.ok and report.first_bad_id == 4 and "missing" in (report.problem or "")


def test_deleted_newest_record_is_detected_by_the_head(any_db: Database) -> None:
    _fill(any_db)
    any_db.execute("DELETE FROM events WHERE id = 5")
    report = audit.verify(db=any_db)
    assert not report.ok and report.first_bad_id == 5


def test_reordered_records_are_named(any_db: Database) -> None:
    _fill(any_db)
    # Swap the contents of records 2 and 3, keeping ids in place.
    rows = {r["id"]: r for r in any_db.query("SELECT * FROM events WHERE id IN (2, 3)")}
    for a, b in ((2, 3), (3, 2)):
        r = rows[b]
        any_db.execute(
            "UPDATE events SET ts = ?, actor = ?, subject = ?, payload = ?, payload_digest = ?,"
            " prev_hash = ?, hash = ? WHERE id = ?",
            (
                r["ts"],
                r["actor"],
                r["subject"],
                r["payload"],
                r["payload_digest"],
                r["prev_hash"],
                r["hash"],
                a,
            ),
        )
    report = audit.verify(db=any_db)
    assert not report.ok and report.first_bad_id == 2


def test_inserted_record_is_named(any_db: Database) -> None:
    _fill(any_db)
    # Shift 4 and 5 up and forge a record 4 with a plausible but wrong hash chain.
    any_db.execute("UPDATE events SET id = id + 10 WHERE id >= 4")
    any_db.execute("UPDATE events SET id = id - 9 WHERE id >= 14")
    forged = any_db.one("SELECT * FROM events WHERE id = 3")
    assert forged is not None
    any_db.execute(
        "INSERT INTO events (id, ts, actor, action, subject, execution_id, payload,"
        " payload_digest, prev_hash, hash) VALUES (4, ?, 'mallory', 'x', 'y', NULL, ?, ?, ?, ?)",
        (forged["ts"], forged["payload"], forged["payload_digest"], forged["hash"], "f" * 64),
    )
    any_db.execute("UPDATE audit_head SET last_id = 6")
    report = audit.verify(db=any_db)
    assert not report.ok and report.first_bad_id == 4


def test_export_is_checkable_without_opsbook(sqlite_db: Database, tmp_path: Path) -> None:
    _fill(sqlite_db, 8)
    cfg = WitnessConfig(witness=tmp_path / "w" / "witness.jsonl", key_file=tmp_path / "w" / "k")
    assert sign_checkpoint(db=sqlite_db, cfg=cfg, signer="test", own=[]) == 8
    out = tmp_path / "pack"
    res = export(db=sqlite_db, out_dir=out, since=None, until=None, witness=cfg)
    assert res.records == 8 and res.chain_ok
    assert (
        subprocess.run(
            ["sha256sum", "-c", "manifest.sha256"], cwd=out, capture_output=True
        ).returncode
        == 0
    )
    ok = subprocess.run(
        [sys.executable, "verify_chain.py", "events.jsonl"], cwd=out, capture_output=True, text=True
    )
    assert ok.returncode == 0, ok.stderr
    # Tamper with the exported file: both checks must notice.
    lines = (out / "events.jsonl").read_text().splitlines()
    rec = json.loads(lines[3])
    rec["actor"] = "mallory"
    lines[3] = json.dumps(rec, sort_keys=True)
    (out / "events.jsonl").write_text("\n".join(lines) + "\n")
    bad = subprocess.run(
        [sys.executable, "verify_chain.py", "events.jsonl"], cwd=out, capture_output=True, text=True
    )
    assert bad.returncode == 1 and "record 4" in bad.stderr and "Traceback" not in bad.stderr
    assert (
        subprocess.run(
            ["sha256sum", "-c", "manifest.sha256"], cwd=out, capture_output=True
        ).returncode
        != 0
    )
