"""Runbook feedback (issue 15): a 1–5 rating and an optional comment per execution and person.

Asked after a run at a terminal (``opsbook run``, never when not interactive), given by scripts
with ``opsbook runbooks feedback``, and on the console's execution page once the run finished.
Giving feedback again replaces the person's earlier rating; each one is audited
(``runbook.feedback``)."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from opsbook import audit
from opsbook.db import Database
from opsbook.errors import ConflictError, NotFoundError, ValidationError

MAX_COMMENT = 2000
#: The run ended in one of these states: feedback is asked (not for aborted or parked runs).
ASKED_AFTER = ("succeeded", "failed")
FINISHED = ("succeeded", "failed", "aborted")


@dataclass(frozen=True)
class FeedbackRow:
    execution_id: str
    person: str
    rating: int
    comment: str | None
    created_at: str
    updated_at: str
    runbook: str | None = None
    procedure: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "execution": self.execution_id,
            "person": self.person,
            "rating": self.rating,
            "comment": self.comment,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "runbook": self.runbook,
            "procedure": self.procedure,
        }


def check_rating(value: object, *, field: str = "rating") -> int:
    """A rating 1..5 (an int or its text); anything else raises ValidationError naming
    ``field``."""
    text = str(value).strip() if value is not None else ""
    if isinstance(value, bool) or not text.isdigit() or not 1 <= int(text) <= 5:
        raise ValidationError(
            f"{field} {value!r} is not a rating from 1 to 5",
            field=field,
            hint="1 = poor, 5 = excellent",
        )
    return int(text)


def give_feedback(
    db: Database,
    *,
    execution_id: str,
    person: str,
    rating: object,
    comment: str | None = None,
) -> FeedbackRow:
    """Record (or replace) ``person``'s feedback on a finished execution, audited."""
    score = check_rating(rating)
    text = (comment or "").strip() or None
    if text is not None and len(text) > MAX_COMMENT:
        raise ValidationError(
            f"comment is {len(text)} characters long",
            field="comment",
            hint=f"keep it under {MAX_COMMENT} characters",
        )
    row = db.one(
        "SELECT id, runbook_id, procedure_id, state, dry_run FROM executions WHERE id = ?",
        (execution_id,),
    )
    if row is None:
        raise NotFoundError(
            f"no execution {execution_id!r}",
            field="execution",
            hint="`opsbook executions list` shows their ids",
        )
    if str(row["state"]) not in FINISHED:
        raise ConflictError(
            f"execution {execution_id} has not finished ({row['state']})",
            hint="give feedback once the run has ended",
        )
    now = datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
    with db.transaction():
        old = db.one(
            "SELECT rating, created_at FROM runbook_feedback WHERE execution_id = ? AND person = ?",
            (execution_id, person),
        )
        if old is None:
            db.execute(
                "INSERT INTO runbook_feedback (execution_id, person, rating, comment,"
                " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)",
                (execution_id, person, score, text, now, now),
            )
        else:
            db.execute(
                "UPDATE runbook_feedback SET rating = ?, comment = ?, updated_at = ?"
                " WHERE execution_id = ? AND person = ?",
                (score, text, now, execution_id, person),
            )
        audit.record(
            db=db,
            actor=person,
            action="runbook.feedback",
            subject=f"runbook:{row['runbook_id']}#{row['procedure_id']}",
            execution_id=execution_id,
            payload={
                "rating": score,
                "comment": text,
                "replaces": int(old["rating"]) if old else None,
            },
            ts=now,
        )
    return FeedbackRow(
        execution_id=execution_id,
        person=person,
        rating=score,
        comment=text,
        created_at=str(old["created_at"]) if old else now,
        updated_at=now,
        runbook=str(row["runbook_id"]),
        procedure=str(row["procedure_id"]),
    )


def feedback_of(db: Database, *, execution_id: str) -> list[FeedbackRow]:
    rows = db.query(
        "SELECT f.*, e.runbook_id, e.procedure_id FROM runbook_feedback f"
        " JOIN executions e ON e.id = f.execution_id WHERE f.execution_id = ? ORDER BY f.id",
        (execution_id,),
    )
    return [_row(r) for r in rows]


def comments(
    db: Database,
    *,
    since: str,
    until: str,
    runbook: str | None = None,
    procedure: str | None = None,
    limit: int = 50,
) -> list[FeedbackRow]:
    """Feedback with a comment on runs started in ``[since, until)``, newest first."""
    sql = (
        "SELECT f.*, e.runbook_id, e.procedure_id FROM runbook_feedback f"
        " JOIN executions e ON e.id = f.execution_id WHERE f.comment IS NOT NULL"
        " AND e.created_at >= ? AND e.created_at < ?"
    )
    params: list[Any] = [since, until]
    if runbook:
        sql += " AND e.runbook_id = ?"
        params.append(runbook)
    if procedure:
        sql += " AND e.procedure_id = ?"
        params.append(procedure)
    sql += " ORDER BY f.updated_at DESC, f.id DESC LIMIT ?"
    params.append(limit)
    return [_row(r) for r in db.query(sql, params)]


def _row(r: dict[str, Any]) -> FeedbackRow:
    return FeedbackRow(
        execution_id=str(r["execution_id"]),
        person=str(r["person"]),
        rating=int(r["rating"]),
        comment=r["comment"],
        created_at=str(r["created_at"]),
        updated_at=str(r["updated_at"]),
        runbook=r.get("runbook_id"),
        procedure=r.get("procedure_id"),
    )


# --- asking at a terminal --------------------------------------------------------------------


def should_ask(
    *,
    state: str,
    interactive: bool,
    no_feedback: bool = False,
    dry_run: bool = False,
    environ: dict[str, str] | None = None,
) -> bool:
    """Ask after a run only at a terminal, for a real run that succeeded or failed, unless
    ``--no-feedback`` or ``OPSBOOK_NO_FEEDBACK=1``."""
    env = os.environ if environ is None else environ
    if no_feedback or dry_run or not interactive:
        return False
    if env.get("OPSBOOK_NO_FEEDBACK", "").strip().lower() in ("1", "true", "yes"):
        return False
    return state in ASKED_AFTER


def ask(
    db: Database,
    *,
    execution_id: str,
    person: str,
    read: Callable[[str], str],
    write: Callable[[str], object],
) -> FeedbackRow | None:
    """Ask for a rating (Enter skips) and a comment, then record them. A bad rating is asked
    again once; end of input or Ctrl-C skips. Never raises for the person's answers."""
    for _ in range(2):
        try:
            answer = read("How useful was this runbook? Rate 1-5 (Enter skips): ").strip()
        except (EOFError, KeyboardInterrupt):
            write("\n")
            return None
        if not answer:
            return None
        try:
            score = check_rating(answer)
        except ValidationError as exc:
            write(f"{exc.message}\n")
            continue
        try:
            comment = read("Comment (optional, Enter to finish): ")
        except (EOFError, KeyboardInterrupt):
            comment = ""
        row = give_feedback(
            db, execution_id=execution_id, person=person, rating=score, comment=comment
        )
        write(f"Thanks: rated {row.rating}/5 (execution {execution_id}).\n")
        return row
    return None
