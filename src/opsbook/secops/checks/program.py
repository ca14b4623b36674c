"""The security programme's own deadlines: findings past their due date, the quarterly access
review."""

from __future__ import annotations

from datetime import datetime, timedelta

from opsbook.secops.checks._base import CheckContext, Failure, Outcome

REVIEW_EVERY = timedelta(days=92)


def _z(when: datetime) -> str:
    return when.isoformat(timespec="microseconds").replace("+00:00", "Z")


async def findings_overdue(cx: CheckContext) -> Outcome:
    if cx.db is None:
        return Outcome.skipped("no opsbook database")
    rows = cx.db.query(
        "SELECT id, title, severity, due_at, owner FROM security_findings"
        " WHERE state = 'open' AND due_at < ? AND environment = ? ORDER BY due_at",
        (_z(cx.now), cx.environment.name),
    )
    return Outcome.of(
        [
            Failure(
                subject=f"FND-{r['id']}",
                text=f"FND-{r['id']} ({r['severity']}: {r['title']}) was due {r['due_at'][:10]}"
                f", owner {r['owner'] or 'nobody'}",
                detail={"finding": f"FND-{r['id']}", "due_at": r["due_at"], "owner": r["owner"]},
                severity="high" if r["severity"] in ("critical", "high") else "medium",
            )
            for r in rows
        ],
        overdue=len(rows),
    )


async def review_due(cx: CheckContext) -> Outcome:
    if cx.db is None:
        return Outcome.skipped("no opsbook database")
    row = cx.db.one(
        "SELECT MAX(closed_at) AS last FROM access_campaigns WHERE state = 'closed'"
        " AND environment = ?",
        (cx.environment.name,),
    )
    last = row["last"] if row else None
    if last and last >= _z(cx.now - REVIEW_EVERY):
        return Outcome.of([], last_review_closed=last)
    return Outcome.of(
        [
            Failure(
                subject=f"access review of {cx.environment.name}",
                text="no access review closed in the last 92 days"
                + (f" (last {last[:10]})" if last else " (none ever)"),
                detail={"last_review_closed": last},
            )
        ],
        last_review_closed=last,
    )
