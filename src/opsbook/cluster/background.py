"""The cluster's background pass (ADR 0017 §6), in every worker and every replica: reap dead
workers (and dispatch their runs), re-send dispatches nobody claimed, prune ended workers.
Every step is a compare-and-set on its row, so any number of processes may run it at once.

The heartbeat is not here: it has its own thread (:class:`opsbook.cluster.heartbeat.Heartbeat`),
so a busy event loop never makes a live process look dead.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from opsbook.cluster.reaper import ReapResult, reap
from opsbook.cluster.registry import prune
from opsbook.errors import OpsbookError
from opsbook.logs import get_logger

if TYPE_CHECKING:
    from opsbook.cluster.settings import ClusterSettings
    from opsbook.db import Database
    from opsbook.engine._hooks import Dispatcher

#: Seconds between two prunes of ended workers; they are kept :data:`KEEP_ENDED_DAYS`.
PRUNE_EVERY = 3600.0
KEEP_ENDED_DAYS = 7.0
REAPER_ACTOR = "system:reaper"


@dataclass(frozen=True)
class PassResult:
    reaped: ReapResult
    resent: int
    pruned: int

    def to_dict(self) -> dict[str, Any]:
        return {"reaped": self.reaped.to_dict(), "resent": self.resent, "pruned": self.pruned}


def pass_once(
    *,
    db: Database,
    worker_id: str,
    dispatcher: Dispatcher | None,
    settings: ClusterSettings,
    home_queue_of: Callable[[str], str] | None = None,
    prune_ended: bool = False,
) -> PassResult:
    """One pass, synchronous (a worker may run it from a thread of its own); call it outside
    a transaction. Re-sending needs a dispatcher
    (:func:`opsbook.cluster.dispatch.redispatch_unclaimed`)."""
    extra: dict[str, Any] = {} if home_queue_of is None else {"home_queue_of": home_queue_of}
    reaped = reap(
        db=db,
        dispatcher=dispatcher,
        actor=f"{REAPER_ACTOR}:{worker_id}",
        skip=(worker_id,),
        **extra,
    )
    resent = 0
    if dispatcher is not None:
        from opsbook.cluster.dispatch import redispatch_unclaimed  # noqa: PLC0415

        resent = redispatch_unclaimed(
            db=db, dispatcher=dispatcher, older_than=settings.redispatch_after, **extra
        )
    pruned = prune(db=db, older_than_days=KEEP_ENDED_DAYS) if prune_ended else 0
    return PassResult(reaped=reaped, resent=resent, pruned=pruned)


def _open(url: str) -> Database:
    from opsbook.db import open_database  # noqa: PLC0415

    return open_database(url)


async def run_background(
    *,
    database_url: str,
    worker_id: str,
    dispatcher: Dispatcher | None,
    settings: ClusterSettings,
    stop: asyncio.Event,
    home_queue_of: Callable[[str], str] | None = None,
    connect: Callable[[str], Database] = _open,
) -> None:
    """Run :func:`pass_once` every ``settings.heartbeat`` seconds until ``stop`` is set (or the
    task is cancelled), on a connection of its own, from a worker thread (the event loop never
    waits on the database). A failed pass is logged; the connection is opened again for the
    next one."""
    log = get_logger(worker_id=worker_id)
    db: Database | None = None
    next_prune = time.monotonic()
    try:
        while not stop.is_set():
            try:
                if db is None:
                    db = await asyncio.to_thread(connect, database_url)
                due = time.monotonic() >= next_prune
                await _in_thread(
                    pass_once,
                    db=db,
                    worker_id=worker_id,
                    dispatcher=dispatcher,
                    settings=settings,
                    home_queue_of=home_queue_of,
                    prune_ended=due,
                )
                if due:
                    next_prune = time.monotonic() + PRUNE_EVERY
            except OpsbookError as exc:
                log.warning("cluster.background.failed", fields={"error": str(exc)})
                if db is not None:
                    with contextlib.suppress(Exception):
                        db.close()
                db = None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), settings.heartbeat)
    finally:
        if db is not None:
            db.close()


async def _in_thread(func: Callable[..., Any], **kwargs: Any) -> Any:
    """``asyncio.to_thread``, but a cancelled caller still waits for the thread to finish
    (it uses the connection the caller closes next)."""
    future = asyncio.ensure_future(asyncio.to_thread(func, **kwargs))
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        await asyncio.wait({future})
        raise
