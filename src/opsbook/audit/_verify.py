from __future__ import annotations

from dataclasses import dataclass

from opsbook.audit._log import record_hash, sha256_hex
from opsbook.db import Database

_BATCH = 5000


@dataclass(frozen=True)
class VerifyReport:
    ok: bool
    checked: int
    first_bad_id: int | None = None
    problem: str | None = None

    def to_dict(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "checked": self.checked,
            "first_bad_id": self.first_bad_id,
            "problem": self.problem,
        }


def verify(*, db: Database) -> VerifyReport:
    """Walk the whole chain in id order. Names the first record that was altered, deleted,
    reordered or inserted: ids must be 1, 2, 3, … with no gap, each ``prev_hash`` must be the
    previous record's hash, each payload must match its digest and each hash must recompute,
    and the head must point at the newest record."""
    expected_id = 1
    prev_hash = ""
    checked = 0
    last = 0
    while True:
        rows = db.query(
            "SELECT id, ts, actor, action, subject, execution_id, payload, payload_digest,"
            " prev_hash, hash FROM events WHERE id >= ? ORDER BY id LIMIT ?",
            (expected_id, _BATCH),
        )
        if not rows:
            break
        for row in rows:
            rid = int(row["id"])
            if rid != expected_id:
                return VerifyReport(
                    False, checked, expected_id, f"record {expected_id} is missing (next is {rid})"
                )
            if row["prev_hash"] != prev_hash:
                return VerifyReport(
                    False, checked, rid, f"record {rid} does not link to record {rid - 1}"
                )
            if sha256_hex(str(row["payload"])) != row["payload_digest"]:
                return VerifyReport(False, checked, rid, f"record {rid}: payload was altered")
            h = record_hash(
                prev_hash=prev_hash,
                id=rid,
                ts=str(row["ts"]),
                actor=str(row["actor"]),
                action=str(row["action"]),
                subject=str(row["subject"]),
                execution_id=row["execution_id"],
                payload_digest=str(row["payload_digest"]),
            )
            if h != row["hash"]:
                return VerifyReport(False, checked, rid, f"record {rid}: contents were altered")
            prev_hash = str(row["hash"])
            expected_id += 1
            checked += 1
            last = rid
    head = db.one("SELECT last_id, last_hash FROM audit_head WHERE id = 1")
    if head is None or int(head["last_id"]) != last or str(head["last_hash"]) != prev_hash:
        head_id = int(head["last_id"]) if head else 0
        bad = last + 1 if head_id > last else head_id or last
        return VerifyReport(
            False,
            checked,
            bad,
            f"the chain head says record {head_id} is newest but the log ends at {last}",
        )
    return VerifyReport(True, checked)
