"""Security operations inside ``opsbook serve`` (issue 14): once a day per environment the whole
check catalogue runs (recorded as a scan, findings moved, dormant accounts disabled); every pass
(hourly) closes expired JIT grants and risk acceptances, alerts on overdue findings, and
evaluates the Sigma detection rules over the last two hours (hits are stored once, so the
overlap raises nothing twice).

The first pass waits ``FIRST_AFTER`` after start; then the loop looks every ``EVERY``. Exactly
once across replicas and cron: the day is claimed per environment in ``schedule_claims`` (ref
``security-check:<env>``) before the run, as the lifecycle's reminders do.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

from opsbook.errors import DatabaseError

if TYPE_CHECKING:
    from opsbook.config import Settings
    from opsbook.db import Database
    from opsbook.executions.context import AppContext
    from opsbook.secops.checks import CheckRun
    from opsbook.workspace import Workspace

FIRST_AFTER = 600.0
EVERY = 3600.0
ACTOR = "system:security"


def disable_dormant(
    db: Database, *, workspace: Workspace, environment: str, run: CheckRun, actor: str
) -> list[str]:
    """Disable what ``accounts.dormant`` found (PCI DSS 8.2.6): opsbook accounts (never the last
    admin) and the sandbox's platform accounts. Returns what was disabled."""
    from opsbook.errors import ConflictError  # noqa: PLC0415
    from opsbook.users.accounts import set_disabled  # noqa: PLC0415

    done = []
    for r in run.results:
        if r.spec.id != "accounts.dormant":
            continue
        for f in r.outcome.failures:
            name = str(f.detail.get("account"))
            if f.subject.startswith("opsbook account "):
                try:
                    set_disabled(db=db, actor=actor, username=name, disabled=True)
                except ConflictError:
                    continue  # the last active admin stays enabled (and stays a finding)
                done.append(f"opsbook:{name}")
            elif f.subject.startswith("platform account "):
                from opsbook import audit  # noqa: PLC0415
                from opsbook.sandbox import iam  # noqa: PLC0415
                from opsbook.sandbox.lifecycle import data_dir_of  # noqa: PLC0415

                if iam.set_disabled(
                    data_dir_of(workspace=workspace, env_name=environment), name=name
                ):
                    audit.record(
                        db=db,
                        actor=actor,
                        action="security.account.disabled",
                        subject=f"platform-account:{environment}/{name}",
                        payload={"reason": "dormant for 90 days or more (PCI DSS 8.2.6)"},
                    )
                    done.append(f"platform:{name}")
    return done


async def daily_check(
    *,
    db: Database,
    workspace: Workspace,
    settings: Settings,
    environment: str,
    day: date | None = None,
    actor: str = ACTOR,
) -> dict[str, Any] | None:
    """Today's run for ``environment`` unless another replica (or cron) claimed it: the scan
    summary and what was disabled, or None when already done today."""
    from opsbook.secops.service import check_and_record  # noqa: PLC0415

    today = (day or datetime.now(UTC).date()).isoformat()
    try:  # the claim commits on its own: a replica that loses it runs nothing
        db.execute(
            "INSERT INTO schedule_claims (ref, due_at, claimed_by) VALUES (?, ?, ?)",
            (f"security-check:{environment}", today, actor),
        )
    except DatabaseError:
        return None
    run, scan = await check_and_record(
        workspace=workspace,
        environment=environment,
        db=db,
        settings=settings,
        actor=actor,
        source="daily",
    )
    disabled = disable_dormant(
        db, workspace=workspace, environment=environment, run=run, actor=actor
    )
    return {"environment": environment, "scan": scan, "disabled": disabled, "counts": run.counts()}


def environments(workspace: Workspace) -> list[str]:
    from opsbook.secops.settings import load_security_settings  # noqa: PLC0415

    cfg = load_security_settings(workspace)
    if not cfg.daily_check:
        return []
    return list(cfg.daily_environments or (workspace.default_environment,))


async def pass_once(ctx: AppContext) -> list[dict[str, Any]]:
    from opsbook.secops import jit  # noqa: PLC0415
    from opsbook.secops.service import alert_overdue  # noqa: PLC0415
    from opsbook.secops.settings import load_security_settings  # noqa: PLC0415

    jit.expire(ctx.db)
    done = []
    for env in environments(ctx.workspace):
        out = await daily_check(
            db=ctx.db, workspace=ctx.workspace, settings=ctx.settings, environment=env
        )
        if out is not None:
            done.append(out)
    alert_overdue(ctx.db, settings=load_security_settings(ctx.workspace), actor=ACTOR)
    from datetime import timedelta  # noqa: PLC0415

    from opsbook.secops.sigma import detect  # noqa: PLC0415

    for env in environments(ctx.workspace):  # each pass looks back two hours: hits are unique
        detect(
            db=ctx.db,
            workspace=ctx.workspace,
            environment=env,
            since=timedelta(hours=2),
            actor=ACTOR,
        )
    return done


async def run_background(ctx: AppContext) -> None:
    """Run until cancelled; a pass that fails is logged and tried again next time."""
    from opsbook.logs import get_logger  # noqa: PLC0415

    await asyncio.sleep(FIRST_AFTER)
    while True:
        try:
            await pass_once(ctx)
        except Exception as exc:  # a broken environment file must not stop serve
            get_logger().error("security.daily", exc_info=exc)
        await asyncio.sleep(EVERY)
