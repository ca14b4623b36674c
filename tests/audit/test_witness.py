"""Checkpoints vouch for each writer's own records (docs/audit.md, ADR 0010): concurrent
writers each sign what they wrote, a database writer's record between them is vouched for by
nobody, a rolled-back record is not vouched for. Real SQLite and PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from opsbook import audit
from opsbook.audit._log import record_hash, sha256_hex, take_own
from opsbook.audit._witness import WitnessConfig, load_key, public_bytes, read, sign_checkpoint
from opsbook.db import Database


@pytest.fixture
def cfg(tmp_path: Path) -> WitnessConfig:
    take_own()  # records other tests wrote in this process are not ours
    return WitnessConfig(witness=tmp_path / "w" / "witness.jsonl", key_file=tmp_path / "w" / "k")


def _write(db: Database, n: int, actor: str) -> list[tuple[int, str]]:
    for i in range(n):
        audit.record(db=db, actor=actor, action="thing.changed", subject=f"t:{i}")
    return take_own()


def _forge(db: Database) -> int:
    """What a database writer does: append a correctly hashed record and move the head."""
    head = db.one("SELECT last_id, last_hash FROM audit_head WHERE id = 1")
    assert head is not None
    rid, prev, ts = int(head["last_id"]) + 1, str(head["last_hash"]), "2026-12-03T00:00:00Z"
    digest = sha256_hex("{}")
    h = record_hash(
        prev_hash=prev,
        id=rid,
        ts=ts,
        actor="mallory",
        action="x",
        subject="y",
        execution_id=None,
        payload_digest=digest,
    )
    db.execute(
        "INSERT INTO events (id, ts, actor, action, subject, execution_id, payload,"
        " payload_digest, prev_hash, hash) VALUES (?, ?, 'mallory', 'x', 'y', NULL, '{}', ?, ?, ?)",
        (rid, ts, digest, prev, h),
    )
    db.execute("UPDATE audit_head SET last_id = ?, last_hash = ? WHERE id = 1", (rid, h))
    return rid


def test_interleaved_writers_each_vouch_and_a_forgery_between_them_is_named(
    any_db: Database, cfg: WitnessConfig
) -> None:
    first = _write(any_db, 2, "adopted")
    assert sign_checkpoint(db=any_db, cfg=cfg, signer="a", own=first) == 2  # first use
    a = _write(any_db, 2, "a")  # 3, 4
    b = _write(any_db, 1, "b")  # 5
    forged = _forge(any_db)  # 6
    a += _write(any_db, 1, "a")  # 7
    assert sign_checkpoint(db=any_db, cfg=cfg, signer="a", own=a) == 7
    report = audit.verify(db=any_db, witness=cfg)
    assert not report.ok and report.unwitnessed == ((5, 6),)  # b has not signed yet
    assert sign_checkpoint(db=any_db, cfg=cfg, signer="b", own=b) == 5
    report = audit.verify(db=any_db, witness=cfg)
    assert not report.ok and report.status == "unwitnessed"
    assert report.unwitnessed == ((forged, forged),) and report.first_bad_id == forged
    lines = [json.loads(x) for x in cfg.witness.read_text().splitlines()]
    assert [x["ids"] for x in lines] == [[[1, 2]], [[3, 4], [7, 7]], [[5, 5]]]


def test_a_rolled_back_record_is_not_vouched_for(any_db: Database, cfg: WitnessConfig) -> None:
    sign_checkpoint(db=any_db, cfg=cfg, signer="t", own=_write(any_db, 1, "x"))
    with pytest.raises(RuntimeError), any_db.transaction():
        audit.record(db=any_db, actor="x", action="thing.changed", subject="gone")
        raise RuntimeError("the state change failed")
    own = _write(any_db, 1, "x")  # the id is reused by the record that did commit
    assert len(own) == 2 and own[0][0] == own[1][0] == 2
    assert sign_checkpoint(db=any_db, cfg=cfg, signer="t", own=own) == 2
    assert audit.verify(db=any_db, witness=cfg).ok


def test_nothing_to_sign_writes_nothing(any_db: Database, cfg: WitnessConfig) -> None:
    assert sign_checkpoint(db=any_db, cfg=cfg, signer="t", own=[]) is None  # empty log
    assert not cfg.witness.exists() and not cfg.key_file.exists()
    report = audit.verify(db=any_db, witness=cfg)
    assert report.ok and report.status == "no-checkpoint" and not report.warnings


def test_a_line_signed_by_another_key_is_refused(any_db: Database, cfg: WitnessConfig) -> None:
    sign_checkpoint(db=any_db, cfg=cfg, signer="t", own=_write(any_db, 2, "x"))
    other = WitnessConfig(witness=cfg.witness, key_file=cfg.key_file.with_name("other"))
    sign_checkpoint(db=any_db, cfg=other, signer="t", own=_write(any_db, 1, "x"))
    report = audit.verify(db=any_db, witness=cfg)
    assert not report.ok and "line 2: signed by key" in str(report.problem)
    key = load_key(cfg, create=False)
    assert key is not None
    assert len(read(cfg.witness, public_bytes(key)).checkpoints) == 1
