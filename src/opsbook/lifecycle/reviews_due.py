"""The seed's update process as lists: runbooks whose review is due (``last_reviewed`` +
``review_interval`` from their front matter, to remind their owners) and emergency procedures
due for their quarterly drill.

An *emergency procedure* is a ``reactive`` procedure of a runbook tagged with one of ``[changes]
emergency_tags`` (default ``emergency``, ``incident``, ``disaster-recovery``), or any procedure
of a runbook tagged ``emergency``. Its last drill is its newest succeeded, non-dry run on the
sandbox or a staging environment; it is due ``[changes] drill_interval`` (90 days) after that.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from opsbook.lifecycle.changes_config import load_settings

if TYPE_CHECKING:
    from opsbook.db import Database
    from opsbook.runbooks.model import Procedure, Runbook
    from opsbook.workspace import Workspace


@dataclass(frozen=True)
class ReviewDue:
    runbook_id: str
    title: str
    owner: str
    last_reviewed: str | None
    review_interval: str | None
    due: str | None  # ISO date
    days_left: int | None  # negative: overdue by that many days
    status: str  # overdue | due-soon | ok | no-cadence
    open_change: int | None  # an open proposal for it, if any

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class DrillDue:
    ref: str
    title: str
    owner: str
    last_drill: str | None  # ISO time of the newest qualifying run
    last_execution: str | None
    due: str | None  # ISO date
    status: str  # never | overdue | due-soon | ok

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def reviews_due(
    *, db: Database, workspace: Workspace, today: date | None = None, include_ok: bool = False
) -> list[ReviewDue]:
    """Runbooks overdue or due within ``[changes] reminder_window``, most urgent first (all of
    them with ``include_ok``)."""
    from opsbook.durations import parse_duration  # noqa: PLC0415
    from opsbook.lifecycle.changes import list_changes  # noqa: PLC0415
    from opsbook.runbooks.catalogue import load_catalogue  # noqa: PLC0415

    settings = load_settings(workspace)
    day = today or date.today()
    window = timedelta(seconds=settings.reminder_window)
    open_by_runbook = {c.runbook_id: c.id for c in reversed(list_changes(db=db, state="open"))}
    out: list[ReviewDue] = []
    for rb in load_catalogue(workspace.runbooks_dir):
        m = rb.meta
        due: date | None = None
        if m.last_reviewed and m.review_interval:
            try:
                due = date.fromisoformat(m.last_reviewed) + timedelta(
                    seconds=parse_duration(m.review_interval)
                )
            except ValueError:
                due = None
        if due is None:
            status, left = "no-cadence", None
        else:
            left = (due - day).days
            status = "overdue" if left < 0 else "due-soon" if due - day <= window else "ok"
        if status == "ok" and not include_ok:
            continue
        out.append(
            ReviewDue(
                runbook_id=rb.id,
                title=m.title,
                owner=m.owner or "(no owner)",
                last_reviewed=m.last_reviewed,
                review_interval=m.review_interval,
                due=due.isoformat() if due else None,
                days_left=left,
                status=status,
                open_change=open_by_runbook.get(rb.id),
            )
        )
    order = {"overdue": 0, "due-soon": 1, "no-cadence": 2, "ok": 3}
    return sorted(out, key=lambda r: (order[r.status], r.days_left or 0, r.runbook_id))


def emergency_procedures(rb: Runbook, emergency_tags: tuple[str, ...]) -> list[Procedure]:
    tags = {t.lower() for t in rb.meta.tags}
    if "emergency" in tags:
        return list(rb.procedures)
    if not tags & {t.lower() for t in emergency_tags}:
        return []
    return [p for p in rb.procedures if p.when_to_use == "reactive"]


def drills_due(
    *, db: Database, workspace: Workspace, now: datetime | None = None, include_ok: bool = False
) -> list[DrillDue]:
    """Emergency procedures never drilled, overdue, or due within the reminder window."""
    from opsbook.lifecycle.changes import is_test_environment  # noqa: PLC0415
    from opsbook.runbooks.catalogue import load_catalogue  # noqa: PLC0415

    settings = load_settings(workspace)
    when = now or datetime.now(UTC)
    interval = timedelta(seconds=settings.drill_interval)
    window = timedelta(seconds=settings.reminder_window)
    test_env: dict[str, bool] = {}
    out: list[DrillDue] = []
    for rb in load_catalogue(workspace.runbooks_dir):
        for proc in emergency_procedures(rb, settings.emergency_tags):
            rows = db.query(
                "SELECT id, environment, created_at FROM executions WHERE runbook_id = ?"
                " AND procedure_id = ? AND state = 'succeeded' AND dry_run = 0"
                " ORDER BY created_at DESC LIMIT 50",
                (rb.id, proc.id),
            )
            last = None
            for r in rows:
                env = str(r["environment"])
                if env not in test_env:
                    test_env[env] = is_test_environment(workspace, env, settings)
                if test_env[env]:
                    last = r
                    break
            if last is None:
                status, due = "never", None
            else:
                started = datetime.fromisoformat(str(last["created_at"]).replace("Z", "+00:00"))
                due_dt = started + interval
                due = due_dt.date()
                status = (
                    "overdue" if due_dt < when else "due-soon" if due_dt - when <= window else "ok"
                )
            if status == "ok" and not include_ok:
                continue
            out.append(
                DrillDue(
                    ref=f"{rb.id}#{proc.id}",
                    title=proc.title,
                    owner=rb.meta.owner or "(no owner)",
                    last_drill=str(last["created_at"]) if last else None,
                    last_execution=str(last["id"]) if last else None,
                    due=due.isoformat() if due else None,
                    status=status,
                )
            )
    order = {"never": 0, "overdue": 1, "due-soon": 2, "ok": 3}
    return sorted(out, key=lambda d: (order[d.status], d.due or "", d.ref))
