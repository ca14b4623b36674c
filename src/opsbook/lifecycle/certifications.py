"""Certifications per area: earned by passing the area's assessment and a graded drill of that
area within the validity period, valid ``certification.valid_for`` (a year by default), listed
for recertification ``remind_within`` before they expire. Every award is audited.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from opsbook import audit

if TYPE_CHECKING:
    from opsbook.db import Database
    from opsbook.lifecycle.training_config import TrainingConfig


@dataclass(frozen=True)
class Certification:
    id: int
    person: str
    area: str
    earned_at: str
    expires_at: str
    assessment_id: int | None
    drill_id: int | None
    status: str  # valid | expiring | expired | revoked

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def parse(ts: str) -> datetime:
    return datetime.fromisoformat(ts.replace("Z", "+00:00"))


def _status(row: dict[str, Any], now: datetime, remind: float) -> str:
    if row["revoked_at"]:
        return "revoked"
    exp = parse(str(row["expires_at"]))
    if exp <= now:
        return "expired"
    return "expiring" if exp - now <= timedelta(seconds=remind) else "valid"


def _cert(row: dict[str, Any], now: datetime, remind: float) -> Certification:
    return Certification(
        id=int(row["id"]),
        person=str(row["person"]),
        area=str(row["area"]),
        earned_at=str(row["earned_at"]),
        expires_at=str(row["expires_at"]),
        assessment_id=int(row["assessment_id"]) if row["assessment_id"] is not None else None,
        drill_id=int(row["drill_id"]) if row["drill_id"] is not None else None,
        status=_status(row, now, remind),
    )


def list_certifications(
    *,
    db: Database,
    config: TrainingConfig,
    person: str | None = None,
    now: datetime | None = None,
    latest_only: bool = True,
) -> list[Certification]:
    """Certifications (the newest per person and area unless ``latest_only`` is false)."""
    when = now or datetime.now(UTC)
    sql = "SELECT * FROM training_certifications"
    args: tuple[Any, ...] = ()
    if person:
        sql += " WHERE person = ?"
        args = (person,)
    rows = db.query(sql + " ORDER BY person, area, earned_at DESC, id DESC", args)
    out: list[Certification] = []
    seen: set[tuple[str, str]] = set()
    for r in rows:
        key = (str(r["person"]), str(r["area"]))
        if latest_only and key in seen:
            continue
        seen.add(key)
        out.append(_cert(r, when, config.remind_within))
    return out


def valid(
    *, db: Database, config: TrainingConfig, person: str, area: str, now: datetime | None = None
) -> Certification | None:
    """The person's certification for ``area`` that is in force now, if any."""
    for c in list_certifications(db=db, config=config, person=person, now=now, latest_only=False):
        if c.area == area and c.status in ("valid", "expiring"):
            return c
    return None


def award_if_earned(
    *,
    db: Database,
    config: TrainingConfig,
    person: str,
    area: str,
    actor: str,
    now: datetime | None = None,
) -> dict[str, Any] | None:
    """Award the area's certification when the person has passed its assessment and a graded
    drill of the area within the validity period and holds no valid one yet; the new (or the
    current) certification, else None."""
    from opsbook.lifecycle import onboarding  # noqa: PLC0415

    when = now or datetime.now(UTC)
    current = valid(db=db, config=config, person=person, area=area, now=when)
    if current is not None and current.status == "valid":
        return current.to_dict()
    since = iso(when - timedelta(seconds=config.valid_for))
    assessment = db.one(
        "SELECT id FROM training_assessments WHERE person = ? AND area = ? AND passed = 1"
        " AND submitted_at >= ? ORDER BY submitted_at DESC, id DESC LIMIT 1",
        (person, area, since),
    )
    drill = db.one(
        "SELECT id FROM training_drills WHERE trainee = ? AND area = ? AND passed = 1"
        " AND ended_at >= ? ORDER BY ended_at DESC, id DESC LIMIT 1",
        (person, area, since),
    )
    if assessment is None or drill is None:
        return None
    expires = when + timedelta(seconds=config.valid_for)
    with db.transaction():
        cid = db.insert(
            "INSERT INTO training_certifications (person, area, earned_at, expires_at,"
            " assessment_id, drill_id, granted_by) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (person, area, iso(when), iso(expires), assessment["id"], drill["id"], actor),
        )
        audit.record(
            db=db,
            actor=actor,
            action="training.certification.awarded",
            subject=f"person:{person}",
            payload={
                "id": cid,
                "area": area,
                "expires_at": iso(expires),
                "assessment": assessment["id"],
                "drill": drill["id"],
            },
        )
        onboarding.tick_by(
            db=db, config=config, person=person, done_by="certification", actor=actor
        )
    row = db.one("SELECT * FROM training_certifications WHERE id = ?", (cid,))
    assert row is not None
    return _cert(row, when, config.remind_within).to_dict()


def due(
    *, db: Database, config: TrainingConfig, now: datetime | None = None
) -> list[Certification]:
    """Certifications expired or expiring within ``remind_within`` (the newest per person and
    area), soonest first: who must recertify."""
    rows = [
        c
        for c in list_certifications(db=db, config=config, now=now)
        if c.status in ("expiring", "expired")
    ]
    return sorted(rows, key=lambda c: c.expires_at)
