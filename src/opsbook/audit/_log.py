from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from opsbook.db import Database


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def record_hash(
    *,
    prev_hash: str,
    id: int,
    ts: str,
    actor: str,
    action: str,
    subject: str,
    execution_id: str | None,
    payload_digest: str,
) -> str:
    material = "|".join(
        [prev_hash, str(id), ts, actor, action, subject, execution_id or "", payload_digest]
    )
    return sha256_hex(material)


#: (id, hash) of the records this process appended and has not yet vouched for in a signed
#: checkpoint (see :mod:`opsbook.audit._witness`). Mutated, never rebound.
_OWN: list[tuple[int, str]] = []
_OWN_MAX = 200_000


def records_written() -> int:
    """How many records this process appended that no checkpoint of its own covers yet."""
    return len(_OWN)


def take_own() -> list[tuple[int, str]]:
    """Hand over (and forget) the records this process appended since the last call."""
    taken = list(_OWN)
    del _OWN[: len(taken)]
    return taken


def give_back(own: list[tuple[int, str]]) -> None:
    """Return records :func:`take_own` handed out when signing them failed."""
    _OWN[:0] = own


def utcnow() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class AuditRecord:
    id: int
    ts: str
    actor: str
    action: str
    subject: str
    execution_id: str | None
    payload: Mapping[str, Any]
    payload_digest: str
    prev_hash: str
    hash: str


def record(
    *,
    db: Database,
    actor: str,
    action: str,
    subject: str,
    payload: Mapping[str, Any] | None = None,
    execution_id: str | None = None,
    ts: str | None = None,
) -> AuditRecord:
    """Append one record. The caller owns the transaction (the state change it records commits
    with it); outside a transaction this opens its own. ``payload`` must already be redacted."""
    with db.transaction():
        head = db.one(
            "SELECT last_id, last_hash FROM audit_head WHERE id = 1 FOR UPDATE"
            if db.dialect == "postgresql"
            else "SELECT last_id, last_hash FROM audit_head WHERE id = 1"
        )
        assert head is not None, "audit_head row missing: the schema was not migrated"
        new_id = int(head["last_id"]) + 1
        prev = str(head["last_hash"])
        when = ts or utcnow()
        body = canonical_json(dict(payload or {}))
        digest = sha256_hex(body)
        h = record_hash(
            prev_hash=prev,
            id=new_id,
            ts=when,
            actor=actor,
            action=action,
            subject=subject,
            execution_id=execution_id,
            payload_digest=digest,
        )
        db.execute(
            "INSERT INTO events (id, ts, actor, action, subject, execution_id, payload,"
            " payload_digest, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (new_id, when, actor, action, subject, execution_id, body, digest, prev, h),
        )
        db.execute("UPDATE audit_head SET last_id = ?, last_hash = ? WHERE id = 1", (new_id, h))
    _OWN.append((new_id, h))
    if len(_OWN) > _OWN_MAX:  # nobody signs in this process: keep memory bounded
        del _OWN[: len(_OWN) - _OWN_MAX]
    return AuditRecord(
        id=new_id,
        ts=when,
        actor=actor,
        action=action,
        subject=subject,
        execution_id=execution_id,
        payload=json.loads(body),
        payload_digest=digest,
        prev_hash=prev,
        hash=h,
    )


def row_to_record(row: Mapping[str, Any]) -> AuditRecord:
    return AuditRecord(
        id=int(row["id"]),
        ts=str(row["ts"]),
        actor=str(row["actor"]),
        action=str(row["action"]),
        subject=str(row["subject"]),
        execution_id=row["execution_id"],
        payload=json.loads(row["payload"]),
        payload_digest=str(row["payload_digest"]),
        prev_hash=str(row["prev_hash"]),
        hash=str(row["hash"]),
    )
