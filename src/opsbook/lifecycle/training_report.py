"""Training progress per person (the console's and `opsbook training status`'s view), and the
completion figure runbook quality metrics report."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from opsbook.db import Database
    from opsbook.lifecycle.training_config import TrainingConfig


def progress(
    *, db: Database, config: TrainingConfig, person: str | None = None
) -> list[dict[str, Any]]:
    from opsbook.lifecycle import certifications, onboarding  # noqa: PLC0415

    people = [person] if person else onboarding.people(db=db)
    out: list[dict[str, Any]] = []
    for p in people:
        items = onboarding.status(db=db, config=config, person=p)
        a = (
            db.one(
                "SELECT COUNT(*) AS n, SUM(passed) AS ok, MAX(score) AS best"
                " FROM training_assessments WHERE person = ?",
                (p,),
            )
            or {}
        )
        d = (
            db.one(
                "SELECT COUNT(*) AS n, SUM(CASE WHEN passed = 1 THEN 1 ELSE 0 END) AS ok,"
                " MAX(score) AS best FROM training_drills WHERE trainee = ?",
                (p,),
            )
            or {}
        )
        certs = certifications.list_certifications(db=db, config=config, person=p)
        out.append(
            {
                "person": p,
                "onboarding_done": sum(1 for i in items if i.done_at),
                "onboarding_total": len(items),
                "onboarding": [i.to_dict() for i in items],
                "assessments": int(a.get("n") or 0),
                "assessments_passed": int(a.get("ok") or 0),
                "best_assessment": a.get("best"),
                "drills": int(d.get("n") or 0),
                "drills_passed": int(d.get("ok") or 0),
                "best_drill": d.get("best"),
                "certifications": [c.to_dict() for c in certs],
            }
        )
    return out


def completion(*, db: Database, config: TrainingConfig) -> dict[str, Any]:
    """How many people with a training record finished onboarding and hold a certification
    in force."""
    rows = progress(db=db, config=config)
    return {
        "people": len(rows),
        "onboarded": sum(1 for r in rows if r["onboarding_done"] == r["onboarding_total"]),
        "certified": sum(
            1
            for r in rows
            if any(c["status"] in ("valid", "expiring") for c in r["certifications"])
        ),
    }
