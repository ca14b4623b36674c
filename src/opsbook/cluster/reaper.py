"""The reaper (ADR 0017 §4): runs in every worker and replica, cheap and safe to run anywhere.

It declares dead the workers found dead (:func:`opsbook.cluster.registry.dead_candidates`,
compare-and-set: one reaper wins each) and, when a broker is configured, dispatches each
RUNNING execution the dead worker owned, in the same transaction as the declaration (the
database is the outbox: a reaper killed in between leaves both undone for the next one), then
sends the messages after commit. The worker that claims one runs ``Engine.resume`` unchanged:
the owner is dead, so the run crashes and is recovered by the existing rules.

Where to: a run whose open step run has a process (``pid``) goes to the dead worker's host
queue ``host.<hostname>``, as only that host can stop the leftovers; the sweeper moves it to
the home queue if nobody there claims it. Otherwise the run's last queue, else its home queue.
Without a dispatcher the reaper only declares dead (the run shows ``crashed``; resume stays
manual, as before).
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from opsbook.cluster.dispatch import DEFAULT_QUEUE, host_queue
from opsbook.cluster.registry import (
    RunningExecution,
    WorkerRow,
    dead_candidates,
    declare_dead,
    process_gone,
    running_owned,
    why_dead,
)
from opsbook.logs import get_logger

if TYPE_CHECKING:
    from opsbook.db import Database
    from opsbook.engine._hooks import Dispatcher


@dataclass(frozen=True)
class Recovery:
    """One dispatch the reaper made for a dead worker's run."""

    execution_id: str
    worker_id: str
    dispatch: int
    queue: str
    sent: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "execution_id": self.execution_id,
            "worker_id": self.worker_id,
            "dispatch": self.dispatch,
            "queue": self.queue,
            "sent": self.sent,
        }


@dataclass(frozen=True)
class ReapResult:
    declared: tuple[str, ...] = ()  # worker ids this reaper declared dead
    recoveries: tuple[Recovery, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "declared": list(self.declared),
            "recoveries": [r.to_dict() for r in self.recoveries],
        }


def recovery_queue(
    run: RunningExecution, worker: WorkerRow, home_queue_of: Callable[[str], str]
) -> str:
    if run.pid is not None:
        return host_queue(worker.host)
    if run.queue and not run.queue.startswith("host."):
        return run.queue
    return home_queue_of(run.environment)


def _default_home(environment: str) -> str:
    return DEFAULT_QUEUE


def reap(
    *,
    db: Database,
    dispatcher: Dispatcher | None,
    actor: str,
    home_queue_of: Callable[[str], str] = _default_home,
    skip: Collection[str] = (),
) -> ReapResult:
    """One pass; call it outside a transaction. ``skip``: worker ids never to declare dead
    (the caller's own: a process that finds itself late fences, it is not reaped by itself).
    ``home_queue_of(environment)`` names the queue of a run that has none recorded."""
    log = get_logger()
    declared: list[str] = []
    pending: list[tuple[RunningExecution, str, int, str]] = []
    for worker in dead_candidates(db=db):
        if worker.id in skip:
            continue
        reason = why_dead(worker)
        with db.transaction():
            won = declare_dead(
                db=db,
                worker_id=worker.id,
                by=actor,
                reason=reason,
                expired_only=not process_gone(worker),
            )
            if not won:
                continue  # another reaper won, or it beat meanwhile
            declared.append(worker.id)
            if dispatcher is not None:
                for run in running_owned(db=db, worker_ids=[worker.id]):
                    queue = recovery_queue(run, worker, home_queue_of)
                    number = dispatcher.enqueue(
                        db=db, execution_id=run.execution_id, queue=queue, actor=actor
                    )
                    pending.append((run, worker.id, number, queue))
        log.warning(
            "cluster.worker.dead",
            fields={"worker_id": worker.id, "reason": reason, "by": actor},
        )
    recoveries = []
    for run, worker_id, number, queue in pending:
        assert dispatcher is not None  # pending is filled only with a dispatcher
        sent = dispatcher.send(
            execution_id=run.execution_id, dispatch=number, queue=queue, actor=actor
        )
        recoveries.append(
            Recovery(
                execution_id=run.execution_id,
                worker_id=worker_id,
                dispatch=number,
                queue=queue,
                sent=sent,
            )
        )
        log.info("cluster.reaper.dispatched", fields=recoveries[-1].to_dict())
    return ReapResult(declared=tuple(declared), recoveries=tuple(recoveries))
