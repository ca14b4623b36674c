"""Procedures with a ``schedule:`` (cron) are started by the server at their times.

Each due time is claimed with one INSERT into ``schedule_claims`` (primary key ref + due
time), so with several replicas exactly one starts the run. Runs are started by
``system:scheduler`` on the workspace's default environment with default parameters; a missed
time is only caught up if it is at most ``CATCH_UP`` old (a server that was down all night
does not start last night's runs in the morning).

Scheduled runs do not pile up: while the previous scheduled run of a procedure has not
finished (it waits for a person, runs, or crashed), a due time is claimed as *skipped* and
recorded in the audit trail (``schedule.run.skipped``) instead of starting another run. Lint
refuses frequent schedules on procedures with manual steps (OB114).

With a broker (ADR 0017 §6) the claim, the new ``Queued`` run and its dispatch commit in one
transaction and the message is sent after it: a replica that dies in between leaves either
nothing (the next tick claims the time again) or a dispatched run the sweeper re-sends.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from opsbook import audit
from opsbook.engine._hooks import Dispatcher
from opsbook.engine.states import TERMINAL_STATES
from opsbook.errors import DatabaseError, OpsbookError
from opsbook.executions import dispatching, operations
from opsbook.executions.context import AppContext
from opsbook.logs import get_logger
from opsbook.users.access import SCHEDULER, Principal
from opsbook.users.roles import expand, permissions_of

TICK = 20.0
CATCH_UP = timedelta(minutes=2)


def _principal() -> Principal:
    return Principal(SCHEDULER, expand(["admin"]), permissions_of(["admin"]), via="system")


def due_now(schedule: str, now: datetime) -> datetime | None:
    """The latest due time at or before ``now`` if it is at most CATCH_UP ago."""
    from croniter import croniter  # noqa: PLC0415

    try:
        last: datetime = croniter(schedule, now).get_prev(datetime)
    except (ValueError, KeyError):
        return None
    if now - last <= CATCH_UP:
        return last
    return None


async def tick(ctx: AppContext, now: datetime | None = None) -> list[str]:
    """Start every scheduled procedure that is due and not yet claimed; returns the ids."""
    when = now or datetime.now(UTC)
    started: list[str] = []
    log = get_logger()
    env = ctx.workspace.default_environment
    for rb in ctx.catalogue().runbooks:
        for p in rb.procedures:
            if not p.schedule or (p.environments and env not in p.environments):
                continue
            due = due_now(p.schedule, when)
            if due is None:
                continue
            ref = f"{rb.id}#{p.id}"
            if any(x.required and x.default is None for x in p.params if x.type != "secret"):
                continue
            dispatcher = ctx.dispatcher
            if dispatcher is not None:
                eid = await _start_queued(ctx, dispatcher, ref, env, due)
                if eid is not None:
                    started.append(eid)
                continue
            try:
                ctx.db.execute(
                    "INSERT INTO schedule_claims (ref, due_at, claimed_by) VALUES (?, ?, ?)",
                    (ref, due.isoformat(), ctx.engine().owner),
                )
            except DatabaseError:
                continue  # claimed by another replica (or by us on an earlier tick)
            previous = _unfinished(ctx, ref, due.isoformat())
            if previous is not None:
                _skip(ctx, ref, due, previous)
                continue
            try:
                row = await operations.start_execution(
                    ctx=ctx,
                    principal=_principal(),
                    ref=ref,
                    environment=env,
                    params={},
                    confirm=True,
                )
            except OpsbookError as exc:
                log.warning("server.schedule.failed", fields={"ref": ref, "error": exc.message})
                continue
            ctx.db.execute(
                "UPDATE schedule_claims SET execution_id = ? WHERE ref = ? AND due_at = ?",
                (row.id, ref, due.isoformat()),
            )
            started.append(row.id)
    return started


_CLAIM_ONCE = (
    "INSERT INTO schedule_claims (ref, due_at, claimed_by) VALUES (?, ?, ?)"
    " ON CONFLICT (ref, due_at) DO NOTHING"
)


async def _start_queued(
    ctx: AppContext, dispatcher: Dispatcher, ref: str, env: str, due: datetime
) -> str | None:
    """Broker mode: claim ``due``, create the run ``Queued`` and dispatch it in one
    transaction, send after commit; the new execution id, or None (claimed elsewhere,
    skipped, or failed: a failure is logged and the time stays claimed, as in-process)."""
    owner = ctx.engine().owner
    try:
        with ctx.db.transaction():
            if ctx.db.execute(_CLAIM_ONCE, (ref, due.isoformat(), owner)) != 1:
                return None  # claimed by another replica (or by us on an earlier tick)
            previous = _unfinished(ctx, ref, due.isoformat())
            if previous is not None:
                _skip(ctx, ref, due, previous)
                return None
            queued = dispatching.create_queued(
                ctx=ctx, principal=_principal(), ref=ref, environment=env, params={}, confirm=True
            )
            ctx.db.execute(
                "UPDATE schedule_claims SET execution_id = ? WHERE ref = ? AND due_at = ?",
                (queued.row.id, ref, due.isoformat()),
            )
    except OpsbookError as exc:  # rolled back with its claim: claim the time alone
        get_logger().warning("server.schedule.failed", fields={"ref": ref, "error": exc.message})
        ctx.db.execute(_CLAIM_ONCE, (ref, due.isoformat(), owner))
        return None
    await dispatching.send_queued(ctx, dispatcher, queued, actor=SCHEDULER)
    return queued.row.id


def _unfinished(ctx: AppContext, ref: str, due: str) -> dict[str, str] | None:
    """The previous scheduled run of ``ref`` when it has not finished (None when it has)."""
    row = ctx.db.one(
        "SELECT c.execution_id AS id, e.state AS state FROM schedule_claims c"
        " JOIN executions e ON e.id = c.execution_id"
        " WHERE c.ref = ? AND c.due_at < ? ORDER BY c.due_at DESC LIMIT 1",
        (ref, due),
    )
    if row is None or row["state"] in TERMINAL_STATES:
        return None
    return {"id": str(row["id"]), "state": str(row["state"])}


def _skip(ctx: AppContext, ref: str, due: datetime, previous: dict[str, str]) -> None:
    with ctx.db.transaction():
        audit.record(
            db=ctx.db,
            actor=SCHEDULER,
            action="schedule.run.skipped",
            subject=ref,
            payload={
                "due_at": due.isoformat(),
                "previous_execution": previous["id"],
                "previous_state": previous["state"],
                "reason": f"the previous scheduled run {previous['id']} is {previous['state']}",
            },
        )
    get_logger().warning(
        "server.schedule.skipped",
        fields={"ref": ref, "previous": previous["id"], "state": previous["state"]},
    )


async def run_schedules(ctx: AppContext) -> None:
    while True:
        try:
            await tick(ctx)
        except OpsbookError as exc:
            get_logger().warning("server.schedule.failed", fields={"error": exc.message})
        await asyncio.sleep(TICK)
