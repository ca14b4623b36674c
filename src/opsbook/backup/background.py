"""Backups inside ``opsbook serve`` (issue 13): once a day per environment a backup is taken and
verified by restore (the day claimed in ``schedule_claims``, ref ``backup:<env>``, so replicas
and cron do it once); every pass (hourly) runs the freshness checks and raises or resolves their
alerts. Only the sandbox's SQLite ledger for now."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from opsbook.errors import DatabaseError, OpsbookError

if TYPE_CHECKING:
    from opsbook.db import Database
    from opsbook.executions.context import AppContext

FIRST_AFTER = 600.0
EVERY = 3600.0
ACTOR = "system:backups"


def _environments(ctx: AppContext) -> list[str]:
    from opsbook.workspace import load_environment  # noqa: PLC0415

    raw = (ctx.workspace.config.get("backups") or {}).get("environments")
    names = [str(n) for n in raw] if isinstance(raw, list) else [ctx.workspace.default_environment]
    return [n for n in names if load_environment(ctx.workspace, n).platform == "local"]


def daily(
    ctx: AppContext, db: Database, environment: str, *, day: str | None = None
) -> dict[str, Any] | None:
    """Today's backup and its verification, unless claimed already (None). While the
    sandbox fault ``backup-job-stopped`` is active it silently does nothing (None, and the day
    is not claimed, so the next pass after the fault is cleared backs up)."""
    from opsbook.backup import catalogue  # noqa: PLC0415
    from opsbook.backup.faults import job_stopped  # noqa: PLC0415

    if job_stopped(ctx.workspace, environment):
        return None
    today = day or datetime.now(UTC).date().isoformat()
    try:
        db.execute(
            "INSERT INTO schedule_claims (ref, due_at, claimed_by) VALUES (?, ?, ?)",
            (f"backup:{environment}", today, ACTOR),
        )
    except DatabaseError:
        return None
    try:
        b = catalogue.take(
            db,
            workspace=ctx.workspace,
            environment=environment,
            settings=ctx.settings,
            actor=ACTOR,
        )
    except OpsbookError as exc:  # catalogued bad with its reason; the checks alert on it
        return {"environment": environment, "error": exc.message}
    return catalogue.verify(
        db, workspace=ctx.workspace, settings=ctx.settings, backup_id=b["id"], actor=ACTOR
    )


def pass_once(ctx: AppContext) -> int:
    """One pass on a connection of its own (it runs in a thread: a big backup must not hold
    the server's event loop). Returns how many critical checks fail."""
    from opsbook.backup.health import alert_failures, check  # noqa: PLC0415
    from opsbook.db import open_database  # noqa: PLC0415

    db = open_database(ctx.settings.database_url_for(ctx.workspace.state_dir))
    try:
        failing = 0
        for env in _environments(ctx):
            daily(ctx, db, env)
            failing += alert_failures(
                db,
                environment=env,
                checks=check(db, workspace=ctx.workspace, environment=env),
                actor=ACTOR,
            )
        return failing
    finally:
        db.close()


async def run_background(ctx: AppContext) -> None:
    from opsbook.logs import get_logger  # noqa: PLC0415

    await asyncio.sleep(FIRST_AFTER)
    while True:
        try:
            await asyncio.to_thread(pass_once, ctx)
        except Exception as exc:  # a broken environment file must not stop serve
            get_logger().error("backups.daily", exc_info=exc)
        await asyncio.sleep(EVERY)
