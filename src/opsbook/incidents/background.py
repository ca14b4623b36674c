"""What `opsbook serve` runs in the background for incidents: the escalation timer loop and
the notification outbox. Timers are rows in the database, so a restarted server (or another
replica) picks them up; each is claimed atomically, so none fires twice."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import time
from typing import TYPE_CHECKING

from opsbook.errors import OpsbookError

if TYPE_CHECKING:
    from opsbook.executions.context import AppContext

TICK = 1.0  # seconds between looks at the timer table (OPSBOOK_INCIDENT_TICK overrides)
#: Seconds between looks for sends a dead process left ``sending`` (OPSBOOK_INCIDENT_STALE_CHECK
#: overrides). Not only at start: with several replicas, one that died leaves its rows while the
#: others keep running (ADR 0017 §6). Only rows older than ``deliver.STALE_AFTER`` count.
STALE_CHECK = 60.0
WAKE_KEY = "incidents.wake"
BATCH = 50  # timers fired between yields to the event loop


def wake(ctx: AppContext) -> None:
    """Tell the outbox loop that pages were queued (declare from the API)."""
    event = ctx.cache.get(WAKE_KEY)
    if isinstance(event, asyncio.Event):
        event.set()


async def run_background(ctx: AppContext) -> None:
    """Run until cancelled."""
    from opsbook.incidents import escalation, impact  # noqa: PLC0415
    from opsbook.incidents.config import load_config  # noqa: PLC0415
    from opsbook.logs import get_logger  # noqa: PLC0415
    from opsbook.notify import deliver  # noqa: PLC0415

    log = get_logger()
    tick = float(os.environ.get("OPSBOOK_INCIDENT_TICK", TICK))
    owner = f"serve:{os.getpid()}:{secrets.token_hex(4)}"
    event = asyncio.Event()
    ctx.cache[WAKE_KEY] = event
    inflight: set[asyncio.Task[object]] = set()
    snapshots: set[asyncio.Task[int]] = set()
    stale_every = float(os.environ.get("OPSBOOK_INCIDENT_STALE_CHECK", STALE_CHECK))
    stale_due = 0.0  # at start, then every stale_every seconds
    last_error = ""
    while True:
        if time.monotonic() >= stale_due:
            stale_due = time.monotonic() + stale_every
            try:
                deliver.mark_stale(db=ctx.db)
            except OpsbookError as exc:
                log.warning("incidents.outbox.stale_failed", fields={"error": exc.message})
        try:
            config = load_config(ctx.workspace)
            fired: list[escalation.Fired] = []
            while True:  # in batches, so requests are served while a backlog fires
                batch = escalation.fire_due(
                    db=ctx.db,
                    policy=config.policy,
                    contacts=config.contacts,
                    key=config.key,
                    owner=owner,
                    limit=BATCH,
                )
                fired.extend(batch)
                if len(batch) < BATCH:
                    break
                await asyncio.sleep(0)
            if fired:
                log.info("incidents.timers.fired", fields={"count": len(fired)})
            paged = any(f.notifications for f in fired)
            should = paged or event.is_set() or (not inflight and _pending(ctx))
            event.clear()
            if should:
                task = asyncio.create_task(
                    deliver.deliver_pending(
                        db=ctx.db,
                        settings=config.policy.notify,
                        key=config.webhook_key,
                        owner=owner,
                    )
                )
                inflight.add(task)
                task.add_done_callback(inflight.discard)
            if not snapshots and _snapshots_due(ctx):  # customer-impact readings
                snap = asyncio.create_task(
                    impact.take_due_async(db=ctx.db, workspace=ctx.workspace, owner=owner)
                )
                snapshots.add(snap)
                snap.add_done_callback(snapshots.discard)
            last_error = ""
        except OpsbookError as exc:  # a broken policy or contacts file: say so once, go on
            if exc.message != last_error:
                log.error("incidents.background", fields={"error": exc.render()})
            last_error = exc.message
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), tick)


def deliver_soon(ctx: AppContext, ids: tuple[int, ...] | list[int]) -> None:
    """Send queued notifications now: wake the background outbox loop, or (no loop, e.g. a
    test app) deliver them in a task of the running event loop."""
    if not ids:
        return
    if WAKE_KEY in ctx.cache:
        wake(ctx)
        return
    from opsbook.incidents.config import load_config  # noqa: PLC0415
    from opsbook.notify.deliver import deliver_pending  # noqa: PLC0415

    config = load_config(ctx.workspace)
    task = asyncio.create_task(
        deliver_pending(
            db=ctx.db,
            settings=config.policy.notify,
            key=config.webhook_key,
            owner=f"api:{os.getpid()}",
            ids=list(ids),
        )
    )
    tasks: set[asyncio.Task[object]] = ctx.cache.setdefault("incidents.deliveries", set())
    tasks.add(task)
    task.add_done_callback(tasks.discard)


def _snapshots_due(ctx: AppContext) -> bool:
    from datetime import UTC, datetime  # noqa: PLC0415

    from opsbook.incidents.model import fmt_ts  # noqa: PLC0415

    return (
        ctx.db.one(
            "SELECT id FROM incident_timers WHERE state = 'pending'"
            " AND kind IN ('snapshot_start', 'snapshot_end') AND due_at <= ? LIMIT 1",
            (fmt_ts(datetime.now(UTC)),),
        )
        is not None
    )


def _pending(ctx: AppContext) -> bool:
    return ctx.db.one("SELECT id FROM notifications WHERE state = 'pending' LIMIT 1") is not None
