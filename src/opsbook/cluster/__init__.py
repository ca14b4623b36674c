"""Scale-out (ADR 0017): execution workers on a broker and replicated servers on one database.

=================  ============================================================================
``settings``       :class:`ClusterSettings`: heartbeat, lease, re-dispatch and leader timings,
                   the broker URL (``OPSBOOK_*`` variables)
``registry``       the ``workers`` table: register, beat, set_state, dead_candidates,
                   declare_dead, list_workers, prune (on the database clock)
``heartbeat``      :class:`Heartbeat`: the beating thread of a process and its self-fencing
``leader``         :class:`LeaderLock` and :func:`while_leader`: one replica runs the loops
                   that must not run twice
``reaper``         :func:`reap`: declare dead workers dead and dispatch their runs
``background``     :func:`run_background`: reap, re-send unclaimed dispatches, prune
``dispatch``       queues, dispatch and claim, the sweeper, the Celery dispatcher
``celery_app``,    the Celery app and ``opsbook worker``
``worker``
=================  ============================================================================

Public names are imported lazily: nothing here connects or imports Celery at import time.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from opsbook.cluster.background import run_background
    from opsbook.cluster.heartbeat import Heartbeat
    from opsbook.cluster.leader import LeaderLock, while_leader
    from opsbook.cluster.reaper import ReapResult, reap
    from opsbook.cluster.registry import WorkerRow
    from opsbook.cluster.settings import ClusterSettings

_WHERE = {
    "ClusterSettings": "settings",
    "Heartbeat": "heartbeat",
    "LeaderLock": "leader",
    "ReapResult": "reaper",
    "WorkerRow": "registry",
    "reap": "reaper",
    "run_background": "background",
    "while_leader": "leader",
}

__all__ = [
    "ClusterSettings",
    "Heartbeat",
    "LeaderLock",
    "ReapResult",
    "WorkerRow",
    "reap",
    "run_background",
    "while_leader",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(name)
    return getattr(import_module(f"opsbook.cluster.{module}"), name)
