"""Runbook quality metrics (issue 15): accuracy signals, review timeliness, training completion.

- **Accuracy signal**: a step run that *failed* in an execution on a sandbox environment
  (``sandbox`` by default) at a moment when the sandbox was healthy: no incident open (drills
  included: a drill's faults explain failures), no alert of that environment firing, and no
  sandbox fault active (``sandbox.fault.injected`` in the audit log, until its duration ran out
  or a ``sandbox.fault.cleared`` followed). Such a failure points at the runbook, not at the
  system: a wrong command, a stale expectation, a missing prerequisite.
- **Review timeliness**: ``last_reviewed`` + ``review_interval`` from the runbook's front
  matter; a runbook past that date is overdue by so many days (the same rule as lint's OB107).
- **Training completion**: people holding a certification in force, per area.
"""

# ruff: noqa: S608 - SQL is built from constant fragments and fixed column names; every value is bound
from __future__ import annotations

import bisect
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from opsbook.db import Database


@dataclass(frozen=True)
class AccuracySignal:
    runbook: str
    procedure: str
    step: str
    failures: int
    last: str
    executions: tuple[str, ...]

    @property
    def ref(self) -> str:
        return f"{self.runbook}#{self.procedure}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "ref": self.ref,
            "runbook": self.runbook,
            "procedure": self.procedure,
            "step": self.step,
            "failures": self.failures,
            "last": self.last,
            "executions": list(self.executions),
        }


@dataclass(frozen=True)
class ReviewStatus:
    runbook: str
    title: str
    owner: str
    last_reviewed: str | None
    review_interval: str | None
    due: str | None
    overdue_days: int | None  # > 0 when overdue; None when there is no cadence

    @property
    def state(self) -> str:
        if self.due is None:
            return "no cadence"
        return "overdue" if (self.overdue_days or 0) > 0 else "ok"

    def to_dict(self) -> dict[str, Any]:
        return {
            "runbook": self.runbook,
            "title": self.title,
            "owner": self.owner,
            "last_reviewed": self.last_reviewed,
            "review_interval": self.review_interval,
            "due": self.due,
            "overdue_days": self.overdue_days,
            "state": self.state,
        }


@dataclass(frozen=True)
class Training:
    measured: bool
    note: str
    by_area: tuple[tuple[str, int], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"measured": self.measured, "note": self.note, "by_area": dict(self.by_area)}


@dataclass(frozen=True)
class Quality:
    accuracy: tuple[AccuracySignal, ...]
    reviews: tuple[ReviewStatus, ...]
    training: Training

    @property
    def overdue(self) -> list[ReviewStatus]:
        return [r for r in self.reviews if r.state == "overdue"]

    def to_dict(self) -> dict[str, Any]:
        return {
            "accuracy": [a.to_dict() for a in self.accuracy],
            "reviews": [r.to_dict() for r in self.reviews],
            "overdue": [r.runbook for r in self.overdue],
            "training": self.training.to_dict(),
        }


def _parse(ts: str) -> datetime:
    return datetime.fromisoformat(ts.replace("Z", "+00:00"))


def _merged(spans: list[tuple[datetime, datetime]]) -> tuple[list[datetime], list[datetime]]:
    """Overlapping spans merged, as sorted starts and their ends (for bisect)."""
    starts: list[datetime] = []
    ends: list[datetime] = []
    for a, b in sorted(spans):
        if ends and a <= ends[-1]:
            ends[-1] = max(ends[-1], b)
        else:
            starts.append(a)
            ends.append(b)
    return starts, ends


def _inside(at: datetime, merged: tuple[list[datetime], list[datetime]]) -> bool:
    starts, ends = merged
    i = bisect.bisect_right(starts, at) - 1
    return i >= 0 and at < ends[i]


_FAR = datetime.max.replace(tzinfo=UTC)


def unhealthy_spans(
    db: Database, *, since: str, until: str, environments: Sequence[str]
) -> list[tuple[datetime, datetime]]:
    """When the sandbox was not healthy: incidents open (drills included), alerts of those
    environments firing, sandbox faults active (from injection to the first clear after it or
    the end of its duration)."""
    spans: list[tuple[datetime, datetime]] = []
    for r in db.query(
        "SELECT detected_at AS a, resolved_at AS b FROM incidents"
        " WHERE detected_at < ? AND (resolved_at IS NULL OR resolved_at >= ?)",
        (until, since),
    ):
        spans.append((_parse(str(r["a"])), _parse(str(r["b"])) if r["b"] else _FAR))
    marks = ", ".join("?" for _ in environments)
    for r in db.query(
        "SELECT starts_at AS a, ends_at AS b FROM mon_alerts WHERE starts_at < ?"
        " AND (ends_at IS NULL OR ends_at >= ?)"
        f" AND (environment IS NULL OR environment IN ({marks}))",
        (until, since, *environments),
    ):
        spans.append((_parse(str(r["a"])), _parse(str(r["b"])) if r["b"] else _FAR))
    faults: list[list[datetime]] = []
    for r in db.query(
        "SELECT ts, action, payload FROM events WHERE action IN"
        " ('sandbox.fault.injected', 'sandbox.fault.cleared') AND ts < ? ORDER BY id",
        (until,),
    ):
        ts = _parse(str(r["ts"]))
        if r["action"] == "sandbox.fault.injected":
            secs = json.loads(str(r["payload"]) or "{}").get("duration")
            faults.append([ts, ts + timedelta(seconds=float(secs)) if secs else _FAR])
        else:
            for w in faults:
                if w[0] <= ts < w[1]:
                    w[1] = ts
    spans.extend((a, b) for a, b in faults)
    return spans


def accuracy_signals(
    db: Database,
    *,
    since: str,
    until: str,
    environments: Sequence[str] = ("sandbox",),
    runbook: str | None = None,
) -> list[AccuracySignal]:
    """Failed step runs of runs started in ``[since, until)`` on a sandbox environment while
    it was healthy (see the module doc), per step, most first."""
    marks = ", ".join("?" for _ in environments)
    only = " AND e.runbook_id = ?" if runbook else ""
    rows = db.query(
        "SELECT e.runbook_id, e.procedure_id, s.step_id, s.started_at, e.id AS execution_id"
        " FROM executions e JOIN step_runs s ON s.execution_id = e.id"
        " WHERE e.dry_run = 0 AND e.created_at >= ? AND e.created_at < ?"
        f" AND e.environment IN ({marks}){only} AND s.state = 'failed'"
        " AND s.started_at IS NOT NULL ORDER BY s.started_at",
        (since, until, *environments, *((runbook,) if runbook else ())),
    )
    if not rows:
        return []
    first, last = str(rows[0]["started_at"]), str(rows[-1]["started_at"])
    later = _iso(_parse(last) + timedelta(seconds=1))
    unhealthy = _merged(unhealthy_spans(db, since=first, until=later, environments=environments))
    found: dict[tuple[str, str, str], list[tuple[str, str]]] = {}
    for r in rows:  # failed steps only
        if _inside(_parse(str(r["started_at"])), unhealthy):
            continue
        key = (str(r["runbook_id"]), str(r["procedure_id"]), str(r["step_id"]))
        found.setdefault(key, []).append((str(r["started_at"]), str(r["execution_id"])))
    out = [
        AccuracySignal(
            runbook=k[0],
            procedure=k[1],
            step=k[2],
            failures=len(v),
            last=v[-1][0],
            executions=tuple(dict.fromkeys(x for _, x in reversed(v)))[:5],
        )
        for k, v in found.items()
    ]
    out.sort(key=lambda a: (-a.failures, a.ref, a.step))
    return out


def _iso(dt: datetime) -> str:
    return dt.isoformat(timespec="microseconds").replace("+00:00", "Z")


def review_statuses(catalogue: Any, *, today: date) -> list[ReviewStatus]:
    """Each runbook's review cadence: due date and days overdue (most overdue first)."""
    from opsbook.durations import parse_duration  # noqa: PLC0415

    out = []
    for rb in catalogue.runbooks:
        m = rb.meta
        due: date | None = None
        if m.last_reviewed and m.review_interval:
            try:
                due = date.fromisoformat(m.last_reviewed) + timedelta(
                    seconds=parse_duration(m.review_interval)
                )
            except ValueError:
                due = None
        out.append(
            ReviewStatus(
                runbook=rb.id,
                title=m.title,
                owner=m.owner,
                last_reviewed=m.last_reviewed,
                review_interval=m.review_interval,
                due=due.isoformat() if due else None,
                overdue_days=(today - due).days if due else None,
            )
        )
    out.sort(
        key=lambda r: (-(r.overdue_days if r.overdue_days is not None else -(10**6)), r.runbook)
    )
    return out


def training_completion(db: Database, *, now: datetime | None = None) -> Training:
    """People holding a certification in force, per area (``training_certifications``), and
    how many of the people in training finished onboarding."""
    from opsbook.lifecycle.certifications import iso  # noqa: PLC0415
    from opsbook.lifecycle.onboarding import people  # noqa: PLC0415

    rows = db.query(
        "SELECT area, COUNT(DISTINCT person) AS n FROM training_certifications"
        " WHERE revoked_at IS NULL AND expires_at > ? GROUP BY area ORDER BY area",
        (iso(now or datetime.now(UTC)),),
    )
    return Training(
        measured=True,
        note=f"people holding a certification in force, per area ({len(people(db=db))} people"
        " with a training record)",
        by_area=tuple((str(r["area"]), int(r["n"])) for r in rows),
    )


def quality(
    db: Database,
    *,
    catalogue: Any,
    since: str,
    until: str,
    today: date,
    environments: Sequence[str] = ("sandbox",),
    runbook: str | None = None,
) -> Quality:
    reviews = review_statuses(catalogue, today=today)
    if runbook:
        reviews = [r for r in reviews if r.runbook == runbook]
    return Quality(
        accuracy=tuple(
            accuracy_signals(
                db, since=since, until=until, environments=environments, runbook=runbook
            )
        ),
        reviews=tuple(reviews),
        training=training_completion(db),
    )
