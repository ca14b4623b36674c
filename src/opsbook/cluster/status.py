"""The cluster at a glance, from the database: workers by state, what waits on each queue and
whether anybody consumes it, and the runs that wait for a recovery decision. What the
``cluster.status`` action returns (runbook 07: losing a worker or a replica)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from opsbook.cluster.registry import list_workers
from opsbook.engine.states import TERMINAL_STATES

if TYPE_CHECKING:
    from opsbook.db import Database

_TERMINAL = tuple(sorted(s.value for s in TERMINAL_STATES))
_BACKLOG = (
    "SELECT queue, COUNT(*) AS waiting, MIN(dispatched_at) AS oldest FROM executions "
    "WHERE claimed_dispatch < dispatch AND state NOT IN (?, ?, ?, ?) AND queue IS NOT NULL "
    "GROUP BY queue ORDER BY queue"
)


@dataclass(frozen=True)
class QueueBacklog:
    queue: str
    waiting: int  # dispatched and not claimed yet
    oldest_waiting_s: float
    consumers: int  # alive or draining workers that consume it

    def to_dict(self) -> dict[str, Any]:
        return {
            "queue": self.queue,
            "waiting": self.waiting,
            "oldest_waiting_s": round(self.oldest_waiting_s, 3),
            "consumers": self.consumers,
        }


def _age(stamp: str | None, now: datetime) -> float:
    if not stamp:
        return 0.0
    try:
        moment = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return 0.0
    return max(0.0, (now - moment).total_seconds())


def backlog(*, db: Database, consumers: dict[str, int] | None = None) -> list[QueueBacklog]:
    """Per queue: runs dispatched and not claimed (``claimed_dispatch < dispatch``)."""
    rows = db.query(_BACKLOG, _TERMINAL)
    now = datetime.now(UTC)
    consumers = consumers or {}
    return [
        QueueBacklog(
            queue=str(r["queue"]),
            waiting=int(r["waiting"]),
            oldest_waiting_s=_age(r["oldest"], now),
            consumers=consumers.get(str(r["queue"]), 0),
        )
        for r in rows
    ]


def cluster_status(*, db: Database) -> dict[str, Any]:
    """Workers (alive, draining, dead), queue backlogs, queues that wait with nobody consuming
    them, and the runs that wait for a person's recovery decision."""
    workers = list_workers(db=db, include_ended=True)
    consumers: dict[str, int] = {}
    for w in workers:
        if w.state in ("alive", "draining") and w.kind == "worker":
            for q in w.queues:
                consumers[q] = consumers.get(q, 0) + 1
    queues = backlog(db=db, consumers=consumers)
    recovery = db.query(
        "SELECT id, runbook_id, procedure_id, environment FROM executions "
        "WHERE state = 'waiting' AND state_name = 'AwaitingRecoveryDecision' ORDER BY created_at"
    )
    by_state: dict[str, int] = {}
    for w in workers:
        by_state[w.state] = by_state.get(w.state, 0) + 1
    return {
        "workers": [w.to_dict() for w in workers if w.state in ("alive", "draining", "dead")],
        "alive": by_state.get("alive", 0),
        "draining": by_state.get("draining", 0),
        "dead": by_state.get("dead", 0),
        "queues": [q.to_dict() for q in queues],
        "unconsumed_queues": [q.queue for q in queues if q.consumers == 0],
        "awaiting_recovery": [
            {
                "execution_id": r["id"],
                "ref": f"{r['runbook_id']}#{r['procedure_id']}",
                "environment": r["environment"],
            }
            for r in recovery
        ],
    }
