"""Stored diagnoses (table ``diagnoses``, migration 0012): saved with who asked, audited, and
found again by id, incident or alert. The caller owns the transaction."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from opsbook import audit
from opsbook.errors import NotFoundError

if TYPE_CHECKING:
    from opsbook.db import Database


def save(db: Database, *, diagnosis: dict[str, Any], actor: str) -> None:
    top = diagnosis.get("top") or {}
    target = diagnosis.get("target") or {}
    with db.transaction():
        db.execute(
            "INSERT INTO diagnoses (id, environment, service, alert, incident, top_cause,"
            " top_service, confidence, body, bundle, created_by, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                diagnosis["id"],
                diagnosis["environment"],
                target.get("service"),
                target.get("alert"),
                target.get("incident"),
                top.get("cause"),
                top.get("service"),
                top.get("confidence"),
                json.dumps(diagnosis, default=str),
                diagnosis.get("bundle"),
                actor,
                datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z"),
            ),
        )
        audit.record(
            db=db,
            actor=actor,
            action="troubleshoot.diagnosed",
            subject=f"diagnosis:{diagnosis['id']}",
            payload={
                "environment": diagnosis["environment"],
                "target": target,
                "top": {k: top.get(k) for k in ("cause", "service", "confidence", "procedure")}
                if top
                else None,
                "bundle": diagnosis.get("bundle"),
            },
        )


def _body(row: dict[str, Any] | None) -> dict[str, Any] | None:
    if row is None:
        return None
    body: dict[str, Any] = json.loads(row["body"])
    body["created_by"] = row["created_by"]
    body["created_at"] = row["created_at"]
    return body


def get(db: Database, diagnosis_id: str) -> dict[str, Any]:
    found = _body(db.one("SELECT * FROM diagnoses WHERE id = ?", (diagnosis_id,)))
    if found is None:
        raise NotFoundError(f"no diagnosis {diagnosis_id}", hint="opsbook diagnose --list")
    return found


def latest_for_incident(db: Database, incident_ref: str) -> dict[str, Any] | None:
    return _body(
        db.one(
            "SELECT * FROM diagnoses WHERE incident = ? ORDER BY created_at DESC LIMIT 1",
            (incident_ref,),
        )
    )


def latest_for_alert(db: Database, alert_id: str) -> dict[str, Any] | None:
    return _body(
        db.one(
            "SELECT * FROM diagnoses WHERE alert = ? ORDER BY created_at DESC LIMIT 1", (alert_id,)
        )
    )


def list_recent(db: Database, *, limit: int = 20) -> list[dict[str, Any]]:
    rows = db.query(
        "SELECT id, environment, service, alert, incident, top_cause, top_service, confidence,"
        " bundle, created_by, created_at FROM diagnoses ORDER BY created_at DESC LIMIT ?",
        (limit,),
    )
    return [dict(r) for r in rows]
