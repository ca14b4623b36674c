"""Dispatch: the database is the outbox, the broker only wakes workers (ADR 0017 §1-§3).

- :func:`home_queue`, :func:`step_queue`, :func:`host_queue`, :func:`home_queue_in`: which
  queue drives what.
- :func:`enqueue`: record a dispatch on the execution row, in the caller's transaction.
- :func:`claim`: the first thing a worker does with a message; one winner per dispatch.
- :func:`drop_reason`: why a claim found nothing to take (duplicate, stale, finished).
- :func:`redispatch_unclaimed`: the sweeper; re-sends dispatches nobody claimed in time.
- :class:`CeleryDispatcher`: :class:`opsbook.engine._hooks.Dispatcher` on Celery, with the
  per-queue counters of :class:`DispatchMetrics` for ``/metrics``.

Celery is imported only by :mod:`opsbook.cluster.celery_app`, never here at import time.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from opsbook.audit._log import utcnow
from opsbook.errors import NotFoundError, OpsbookError
from opsbook.logs import get_logger

if TYPE_CHECKING:
    from opsbook.db import Database
    from opsbook.engine._hooks import Dispatcher
    from opsbook.runbooks.model import Step
    from opsbook.workspace import Environment, Workspace

#: The queue of an environment that names none.
DEFAULT_QUEUE = "default"
#: The Celery task every dispatch sends.
DRIVE_TASK = "opsbook.drive"
#: Who the sweeper's re-sent messages act as (the journal records it on the claim).
SWEEPER_ACTOR = "system:cluster"
#: Rows one sweep looks at (oldest first); the next sweep takes the rest.
SWEEP_LIMIT = 200

_FINISHED = ("succeeded", "failed", "aborted", "skipped")
_NOT_FINISHED = f"state NOT IN ({', '.join(repr(s) for s in _FINISHED)})"

_CLAIM = (
    "UPDATE executions SET claimed_dispatch = ?, claimed_by = ?"  # noqa: S608 - constants only
    " WHERE id = ? AND dispatch = ? AND claimed_dispatch < ?"
    f" AND {_NOT_FINISHED}"
)


# -- queues -----------------------------------------------------------------------------------
def home_queue(env: Environment) -> str:
    """The environment's queue (``queue:`` in its file), else ``default``."""
    return env.queue or DEFAULT_QUEUE


def step_queue(step: Step, env: Environment) -> str:
    """Where a step runs: its ``{queue=…}`` mapped through the environment's ``queues:``
    (a logical name each region maps), else the environment's home queue. The engine's rule
    (it routes with it, and may not import this package): one implementation."""
    from opsbook.engine._running import step_queue as engine_step_queue  # noqa: PLC0415

    return engine_step_queue(step, env)


def home_queue_in(workspace: Workspace) -> Callable[[str], str]:
    """``home_queue_of`` for the sweeper and the reaper: the home queue of an environment of
    ``workspace`` by name (``default`` when its file cannot be read here)."""

    def home_queue_of(environment: str) -> str:
        from opsbook.workspace import load_environment  # noqa: PLC0415

        try:
            return home_queue(load_environment(workspace, environment))
        except OpsbookError:
            return DEFAULT_QUEUE

    return home_queue_of


def host_queue(hostname: str | None = None) -> str:
    """The queue only the workers of one host consume (recoveries whose leftover processes
    must be stopped there): ``host.<hostname>``, this host's when none is given."""
    return f"host.{(hostname or socket.gethostname()).lower()}"


# -- dispatch and claim -----------------------------------------------------------------------
def enqueue(*, db: Database, execution_id: str, queue: str, actor: str) -> int:
    """Record a dispatch of ``execution_id`` to ``queue``: bumps its dispatch number, which
    is returned. Joins the caller's transaction (the state change that made the run drivable
    commits with it); the message is sent after the commit (:meth:`CeleryDispatcher.send`).
    ``actor`` is who dispatched (the transition beside it audits them)."""
    with db.transaction():
        row = db.one(
            "UPDATE executions SET dispatch = dispatch + 1, queue = ?, dispatched_at = ?"
            " WHERE id = ? RETURNING dispatch",
            (queue, utcnow(), execution_id),
        )
    if row is None:
        raise NotFoundError(
            f"no execution {execution_id!r} to dispatch",
            hint="`opsbook executions list` shows the executions",
        )
    return int(row["dispatch"])


def claim(*, db: Database, execution_id: str, dispatch: int, worker_id: str) -> bool:
    """Take dispatch ``dispatch`` of an execution for ``worker_id`` (its owner token); True
    for exactly one caller. Run outside a transaction (it commits by itself): a redelivered,
    stale or finished message finds no row and is dropped."""
    count = db.execute(_CLAIM, (dispatch, worker_id, execution_id, dispatch, dispatch))
    return count == 1


def drop_reason(*, db: Database, execution_id: str, dispatch: int) -> str:
    """Why :func:`claim` found nothing: ``finished`` (the run ended), ``stale`` (a newer
    dispatch exists), ``duplicate`` (this dispatch was claimed already) or ``missing``."""
    row = db.one(
        "SELECT state, dispatch, claimed_dispatch FROM executions WHERE id = ?", (execution_id,)
    )
    if row is None:
        return "missing"
    if str(row["state"]) in _FINISHED:
        return "finished"
    if int(row["dispatch"]) > dispatch:
        return "stale"
    return "duplicate"


def _default_home(environment: str) -> str:
    return DEFAULT_QUEUE


def redispatch_unclaimed(
    *,
    db: Database,
    dispatcher: Dispatcher,
    older_than: float,
    home_queue_of: Callable[[str], str] = _default_home,
    limit: int = SWEEP_LIMIT,
) -> int:
    """Re-send every dispatch nobody claimed for ``older_than`` seconds (a message the broker
    lost or never got); returns how many were re-sent. Each row is won first with a
    compare-and-set on ``dispatched_at``, so two sweepers (replicas, workers) send it once. A
    ``host.*`` dispatch goes to the run's home queue instead (``home_queue_of(environment)``):
    nobody on that host took it. Call it outside a transaction."""
    cutoff = _iso(datetime.now(UTC) - timedelta(seconds=older_than))
    rows = db.query(
        "SELECT id, dispatch, queue, dispatched_at, environment FROM executions"  # noqa: S608
        f" WHERE claimed_dispatch < dispatch AND dispatched_at < ? AND {_NOT_FINISHED}"
        " ORDER BY dispatched_at LIMIT ?",
        (cutoff, limit),
    )
    log = get_logger()
    metrics = getattr(dispatcher, "metrics", None)
    sent = 0
    for row in rows:
        queue = str(row["queue"] or DEFAULT_QUEUE)
        if queue.startswith("host."):
            queue = home_queue_of(str(row["environment"]))
        won = db.execute(
            "UPDATE executions SET dispatched_at = ?, queue = ?"
            " WHERE id = ? AND dispatch = ? AND dispatched_at = ? AND claimed_dispatch < dispatch",
            (utcnow(), queue, row["id"], row["dispatch"], row["dispatched_at"]),
        )
        if won != 1:
            continue  # another sweeper took it, or a worker claimed it meanwhile
        log.info(
            "cluster.dispatch.resent",
            fields={"execution_id": row["id"], "dispatch": row["dispatch"], "queue": queue},
        )
        if isinstance(metrics, DispatchMetrics):
            metrics.count("resent", queue)
        if dispatcher.send(
            execution_id=str(row["id"]),
            dispatch=int(row["dispatch"]),
            queue=queue,
            actor=SWEEPER_ACTOR,
        ):
            sent += 1
    return sent


def _iso(moment: datetime) -> str:
    """The form of :func:`opsbook.audit._log.utcnow` (text compares in time order)."""
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


# -- Celery -----------------------------------------------------------------------------------
@dataclass
class DispatchMetrics:
    """Per-queue counters of this process's dispatches (``opsbook_dispatch_*_total``)."""

    sent: dict[str, int] = field(default_factory=dict)
    send_failures: dict[str, int] = field(default_factory=dict)
    resent: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def count(self, kind: str, queue: str) -> None:
        """Add one to ``kind`` (``sent``, ``send_failures`` or ``resent``) of ``queue``."""
        counters: dict[str, int] = getattr(self, kind)
        with self._lock:
            counters[queue] = counters.get(queue, 0) + 1

    def snapshot(self) -> dict[str, dict[str, int]]:
        with self._lock:
            return {
                "sent": dict(self.sent),
                "send_failures": dict(self.send_failures),
                "resent": dict(self.resent),
            }


class CeleryDispatcher:
    """Dispatch through Celery (``app`` from :func:`opsbook.cluster.celery_app.make_app`).
    ``send`` publishes once (the app's publish retry policy is ``max_retries: 0``) and never
    raises: a message the broker did not take is re-sent by :func:`redispatch_unclaimed`."""

    def __init__(self, app: Any, *, metrics: DispatchMetrics | None = None) -> None:
        self.app = app
        self.metrics = metrics or DispatchMetrics()
        self.log = get_logger()

    def enqueue(self, *, db: Database, execution_id: str, queue: str, actor: str) -> int:
        return enqueue(db=db, execution_id=execution_id, queue=queue, actor=actor)

    def send(
        self,
        *,
        execution_id: str,
        dispatch: int,
        queue: str,
        actor: str,
        decision: str | None = None,
    ) -> bool:
        try:
            self.app.send_task(
                DRIVE_TASK, args=(execution_id, dispatch, actor, decision), queue=queue
            )
        except Exception as exc:  # any broker error (kombu, redis, socket): the sweeper re-sends
            self.metrics.count("send_failures", queue)
            self.log.warning(
                "cluster.dispatch.send_failed",
                fields={
                    "execution_id": execution_id,
                    "dispatch": dispatch,
                    "queue": queue,
                    "error": f"{type(exc).__name__}: {exc}",
                },
            )
            return False
        self.metrics.count("sent", queue)
        return True
