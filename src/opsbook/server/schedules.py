"""Procedures with a ``schedule:`` (cron) are started by the server at their times.

Each due time is claimed with one INSERT into ``schedule_claims`` (primary key ref + due
time), so with several replicas exactly one starts the run. Runs are started by
``system:scheduler`` on the workspace's default environment with default parameters; a missed
time is only caught up if it is at most ``CATCH_UP`` old (a server that was down all night
does not start last night's runs in the morning).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from opsbook.api import operations
from opsbook.api.context import AppContext
from opsbook.errors import DatabaseError, OpsbookError
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
            try:
                ctx.db.execute(
                    "INSERT INTO schedule_claims (ref, due_at, claimed_by) VALUES (?, ?, ?)",
                    (ref, due.isoformat(), ctx.engine().owner),
                )
            except DatabaseError:
                continue  # claimed by another replica (or by us on an earlier tick)
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


async def run_schedules(ctx: AppContext) -> None:
    while True:
        try:
            await tick(ctx)
        except OpsbookError as exc:
            get_logger().warning("server.schedule.failed", fields={"error": exc.message})
        await asyncio.sleep(TICK)
