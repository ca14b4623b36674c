"""The onboarding checklist (``training.yaml`` ``onboarding:``), ticked per person.

Items with ``done_by`` are ticked by themselves: ``assessment`` when the person passes an
assessment, ``drill`` when they pass a graded drill, ``certification`` when they earn a
certification. Every tick is audited.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from opsbook import audit
from opsbook.errors import ValidationError

if TYPE_CHECKING:
    from opsbook.db import Database
    from opsbook.lifecycle.training_config import TrainingConfig


@dataclass(frozen=True)
class ItemState:
    id: str
    title: str
    done_at: str | None
    recorded_by: str | None
    done_by: str | None  # ticked by itself on this event

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def status(*, db: Database, config: TrainingConfig, person: str) -> list[ItemState]:
    rows = {
        str(r["item"]): r
        for r in db.query(
            "SELECT item, done_at, recorded_by FROM training_onboarding WHERE person = ?",
            (person,),
        )
    }
    return [
        ItemState(
            i.id,
            i.title,
            str(rows[i.id]["done_at"]) if i.id in rows else None,
            str(rows[i.id]["recorded_by"]) if i.id in rows else None,
            i.done_by,
        )
        for i in config.onboarding
    ]


def people(*, db: Database) -> list[str]:
    """Everyone with any training record."""
    rows = db.query(
        "SELECT person FROM training_onboarding UNION SELECT person FROM training_assessments"
        " UNION SELECT trainee AS person FROM training_drills"
        " UNION SELECT person FROM training_certifications"
    )
    return sorted({str(r["person"]) for r in rows})


def tick(
    *, db: Database, config: TrainingConfig, person: str, item: str, actor: str, note: str = ""
) -> ItemState:
    """Tick ``item`` for ``person`` (a second tick keeps the first date)."""
    ids = [i.id for i in config.onboarding]
    if item not in ids:
        import difflib  # noqa: PLC0415

        close = difflib.get_close_matches(item, ids, n=3)
        raise ValidationError(
            f"unknown onboarding item {item!r}",
            field="item",
            hint=(f"did you mean {', '.join(close)}? " if close else "")
            + f"items: {', '.join(ids)}",
        )
    with db.transaction():
        _tick(db=db, person=person, item=item, actor=actor, note=note)
    return next(s for s in status(db=db, config=config, person=person) if s.id == item)


def _tick(*, db: Database, person: str, item: str, actor: str, note: str = "") -> bool:
    if db.one(
        "SELECT 1 AS x FROM training_onboarding WHERE person = ? AND item = ?", (person, item)
    ):
        return False
    db.execute(
        "INSERT INTO training_onboarding (person, item, done_at, recorded_by, note)"
        " VALUES (?, ?, ?, ?, ?)",
        (person, item, _now(), actor, note or None),
    )
    audit.record(
        db=db,
        actor=actor,
        action="training.onboarding.ticked",
        subject=f"person:{person}",
        payload={"item": item, "note": note or None},
    )
    return True


def tick_by(*, db: Database, config: TrainingConfig, person: str, done_by: str, actor: str) -> None:
    """Tick the items that ``done_by`` completes (inside the caller's transaction)."""
    for i in config.onboarding:
        if i.done_by == done_by:
            _tick(db=db, person=person, item=i.id, actor=actor, note=f"by the {done_by}")
