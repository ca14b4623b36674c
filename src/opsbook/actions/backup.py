"""Runbook actions of backup and recovery (issue 13): what runbook 05's procedures call.

- ``backup.take`` {type, verify, retention}: a backup of the environment's ledger (SQLite online
  backup, or pgBackRest on PostgreSQL), optionally verified by restore;
- ``backup.verify`` {backup}: verify one (default the newest) by restore;
- ``backup.check``: the freshness and health checks (``result.critical_failed == 0``);
- ``backup.prune`` {keep}: retention (pgBackRest ``expire``; the SQLite catalogue's oldest);
- ``backup.recover_prepare`` {to_time | to_xid | to_name}: the ledger at that point in a new
  instance, and what the cut-over would lose;
- ``backup.recover_cutover`` {instance}: the services onto it (after the runbook's approval);
- ``dr.status``, ``dr.setup`` {sync}, ``dr.failover`` {reason}, ``dr.failback``;
- ``azure.sql_restore`` {to_time} and ``azure.sql_failover`` {allow_data_loss}: production's
  commands (``az``), described in a dry run.

Each opens its own connection to opsbook's database (the engine's is busy with the journal)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from opsbook.actions._registry import ActionContext, ActionSpec, action
from opsbook.errors import OpsbookError, ValidationError


def _call(ctx: ActionContext, fn: Callable[..., Any], **kw: Any) -> Any:
    """Run ``fn(db, workspace=, settings=, environment=, actor=, **kw)`` in a thread."""

    def work() -> Any:
        from opsbook.config import Settings  # noqa: PLC0415
        from opsbook.db import open_database  # noqa: PLC0415
        from opsbook.workspace import Workspace  # noqa: PLC0415

        ws = Workspace.load(Path(ctx.workspace))
        settings = Settings.from_env()
        db = open_database(settings.database_url_for(ws.state_dir))
        try:
            return fn(
                db,
                workspace=ws,
                settings=settings,
                environment=ctx.environment_name,
                actor=ctx.started_by,
                **kw,
            )
        finally:
            db.close()

    return asyncio.to_thread(work)


def _bool(args: Mapping[str, Any], key: str, default: bool) -> bool:
    value = args.get(key, default)
    if isinstance(value, bool):
        return value
    if str(value).lower() in ("true", "yes", "1"):
        return True
    if str(value).lower() in ("false", "no", "0"):
        return False
    raise ValidationError(f"{key} must be true or false, not {value!r}", field=key)


@action(
    "backup.take",
    description="Back up the environment's ledger (pgBackRest on PostgreSQL, the online backup"
    " API on SQLite), encrypted, copied to the DR location; optionally verify it by restore.",
    args={
        "type": "full, diff or incr (PostgreSQL; default full)",
        "verify": "restore it into a scratch instance and check it (default false)",
        "retention": "daily, weekly or monthly (default daily)",
    },
    supports_dry_run=True,
)
async def take(ctx: ActionContext, args: Mapping[str, Any]) -> Any:
    kind, verify = str(args.get("type", "full")), _bool(args, "verify", False)
    if ctx.dry_run:
        return {"would_take": kind, "verify": verify, "environment": ctx.environment_name}
    from opsbook.backup import catalogue  # noqa: PLC0415

    def work(db: Any, *, workspace: Any, settings: Any, environment: str, actor: str) -> Any:
        b = catalogue.take(
            db,
            workspace=workspace,
            environment=environment,
            settings=settings,
            actor=actor,
            retention=str(args.get("retention", "daily")),
            kind=kind,
        )
        if verify:
            b = catalogue.verify(
                db, workspace=workspace, settings=settings, backup_id=b["id"], actor=actor
            )
        return b

    ctx.progress(f"backing up the ledger of {ctx.environment_name} ({kind})")
    out = await _call(ctx, work)
    ctx.progress(f"{out['id']}: {out['state']}, {out['stored_bytes']} bytes stored")
    return out


@action(
    "backup.verify",
    description="Verify a backup by restoring it into a scratch instance: checksums, row counts"
    " against its manifest, the ledger invariants. Default: the newest backup.",
    args={"backup": "the backup id (optional)"},
)
async def verify(ctx: ActionContext, args: Mapping[str, Any]) -> Any:
    from opsbook.backup import catalogue  # noqa: PLC0415

    def work(db: Any, *, workspace: Any, settings: Any, environment: str, actor: str) -> Any:
        bid = args.get("backup")
        if not bid:
            found = catalogue.list_backups(db, environment=environment, limit=1)
            if not found:
                raise ValidationError(
                    f"no backup of {environment} to verify", hint="backup.take first"
                )
            bid = found[0]["id"]
        return catalogue.verify(
            db, workspace=workspace, settings=settings, backup_id=str(bid), actor=actor
        )

    return await _call(ctx, work)


@action(
    "backup.check",
    description="Backup freshness and health in the Barman manner (last backup, age, size, last"
    " verified restore, DR copy, WAL archive, DR replica lag).",
    supports_dry_run=True,
)
async def check(ctx: ActionContext, args: Mapping[str, Any]) -> Any:
    if ctx.dry_run:
        return {"would_check": ctx.environment_name}
    from opsbook.backup.health import check as run_checks  # noqa: PLC0415

    def work(db: Any, *, workspace: Any, settings: Any, environment: str, actor: str) -> Any:
        checks = [c.to_dict() for c in run_checks(db, workspace=workspace, environment=environment)]
        return {
            "checks": checks,
            "critical_failed": sum(1 for c in checks if c["critical"] and c["status"] != "ok"),
            "failed": [c["name"] for c in checks if c["status"] != "ok"],
        }

    return await _call(ctx, work)


@action(
    "backup.prune",
    description="Retention: keep the newest backups (pgBackRest expire on PostgreSQL; the"
    " oldest SQLite backups' files removed, their catalogue rows kept as expired).",
    args={"keep": "full backups to keep (default 2)"},
)
async def prune(ctx: ActionContext, args: Mapping[str, Any]) -> Any:
    from opsbook.backup import catalogue  # noqa: PLC0415

    try:
        keep = int(args.get("keep", 2))
    except (TypeError, ValueError):
        raise ValidationError("keep must be a number", field="keep") from None
    if keep < 1:
        raise ValidationError("keep must be at least 1", field="keep")

    def work(db: Any, *, workspace: Any, settings: Any, environment: str, actor: str) -> Any:
        return catalogue.prune(
            db,
            workspace=workspace,
            settings=settings,
            environment=environment,
            keep=keep,
            actor=actor,
        )

    return await _call(ctx, work)


def _target(args: Mapping[str, Any]) -> tuple[str, str]:
    given = [(k, str(args[f"to_{k}"])) for k in ("time", "xid", "name") if args.get(f"to_{k}")]
    if len(given) != 1:
        raise ValidationError(
            "give exactly one of to_time, to_xid, to_name",
            field="to_time",
            hint="to_time: 2026-12-04T05:30:00Z",
        )
    return given[0]


@action(
    "backup.recover_prepare",
    description="Restore the ledger as it was at a point in time into a new instance, check it"
    " and show what the cut-over would lose (transfers after the target). Nothing running is"
    " touched.",
    args={
        "to_time": "ISO 8601 UTC time",
        "to_xid": "a transaction id",
        "to_name": "a named restore point",
    },
    supports_dry_run=True,
)
async def recover_prepare(ctx: ActionContext, args: Mapping[str, Any]) -> Any:
    from opsbook.backup import recovery  # noqa: PLC0415

    kind, value = _target(args)
    if ctx.dry_run:

        def window(db: Any, *, workspace: Any, settings: Any, environment: str, actor: str) -> Any:
            return recovery.window(workspace=workspace, settings=settings, environment=environment)

        try:
            win = await _call(ctx, window)
        except OpsbookError as exc:  # described, not run: say why it could not run here
            return {"would_restore": {kind: value}, "window": None, "cannot": str(exc)}
        return {"would_restore": {kind: value}, "window": win}

    def work(db: Any, *, workspace: Any, settings: Any, environment: str, actor: str) -> Any:
        return recovery.prepare(
            db,
            workspace=workspace,
            settings=settings,
            environment=environment,
            kind=kind,
            value=value,
            actor=actor,
            execution_id=ctx.execution_id,
        )

    ctx.progress(f"restoring the ledger at {kind} {value} into a new instance")
    out = await _call(ctx, work)
    lost = out["lost"]
    ctx.progress(
        f"{out['instance']} ready in {out['restore_s']:.1f}s; the cut-over loses "
        + (f"{lost['transfers']} transfer(s)" if lost.get("known") else "an unknown amount")
    )
    return out


@action(
    "backup.recover_cutover",
    description="Point the services at a recovered instance (after the approval): archiving"
    " on, the old primary retired with its data kept.",
    args={"instance": "the instance backup.recover_prepare made"},
    required=("instance",),
)
async def recover_cutover(ctx: ActionContext, args: Mapping[str, Any]) -> Any:
    from opsbook.backup import recovery  # noqa: PLC0415

    def work(db: Any, *, workspace: Any, settings: Any, environment: str, actor: str) -> Any:
        return recovery.cutover(
            db,
            workspace=workspace,
            settings=settings,
            environment=environment,
            instance=str(args["instance"]),
            actor=actor,
            execution_id=ctx.execution_id,
        )

    return await _call(ctx, work)


@action(
    "dr.status",
    description="The ledger's clusters by region: primary, replicas, replication state and lag.",
    supports_dry_run=True,
)
async def dr_status(ctx: ActionContext, args: Mapping[str, Any]) -> Any:
    from opsbook.backup import dr  # noqa: PLC0415

    def work(db: Any, *, workspace: Any, settings: Any, environment: str, actor: str) -> Any:
        return dr.status(workspace=workspace, environment=environment)

    return await _call(ctx, work)


@action(
    "dr.setup",
    description="Seed (or re-seed) the DR region's replica of the ledger, streaming.",
    args={
        "sync": "a synchronous replica (default on PostgreSQL: no committed transfer lost);"
        " SQLite ships its journal asynchronously"
    },
)
async def dr_setup(ctx: ActionContext, args: Mapping[str, Any]) -> Any:
    from opsbook.backup import dr  # noqa: PLC0415

    sync = _bool(args, "sync", True) if "sync" in args else None

    def work(db: Any, *, workspace: Any, settings: Any, environment: str, actor: str) -> Any:
        return dr.setup(
            db,
            workspace=workspace,
            settings=settings,
            environment=environment,
            sync=sync,
            actor=actor,
        )

    return await _call(ctx, work)


@action(
    "dr.failover",
    description="The primary region is lost: fence it, promote the DR replica, repoint the"
    " services; measures RTO and RPO against the workspace's targets.",
    args={"reason": "why (the incident ticket)"},
)
async def dr_failover(ctx: ActionContext, args: Mapping[str, Any]) -> Any:
    from opsbook.backup import dr  # noqa: PLC0415

    def work(db: Any, *, workspace: Any, settings: Any, environment: str, actor: str) -> Any:
        return dr.failover(
            db,
            workspace=workspace,
            settings=settings,
            environment=environment,
            actor=actor,
            reason=str(args.get("reason") or "failover"),
            execution_id=ctx.execution_id,
        )

    out = await _call(ctx, work)
    ctx.progress(
        f"failed over to {out['to']}: RTO {out['rto_s']:.1f}s, RPO "
        f"{out['rpo'].get('transfers')} transfer(s)"
    )
    return out


@action(
    "dr.failback",
    description="Re-seed the old primary from the DR region, switch over to it without loss and"
    " make the DR region a replica again.",
    args={"sync": "keep the DR replica synchronous (default true)"},
)
async def dr_failback(ctx: ActionContext, args: Mapping[str, Any]) -> Any:
    from opsbook.backup import dr  # noqa: PLC0415

    sync = _bool(args, "sync", True)

    def work(db: Any, *, workspace: Any, settings: Any, environment: str, actor: str) -> Any:
        return dr.failback(
            db,
            workspace=workspace,
            settings=settings,
            environment=environment,
            actor=actor,
            sync=sync,
        )

    return await _call(ctx, work)


def _azure(ctx: ActionContext) -> Any:
    from opsbook.backup.azuresql import AzureSqlRecovery  # noqa: PLC0415

    return AzureSqlRecovery(
        environment=ctx.environment,
        dry_run=ctx.dry_run,
        env_file=str(Path(ctx.workspace) / "environments" / f"{ctx.environment_name}.yaml"),
    )


@action(
    "azure.sql_restore",
    description="Azure SQL point-in-time restore of the ledger into a new database (az sql db"
    " restore), checked Online; the commands are shown in a dry run.",
    args={"to_time": "ISO 8601 UTC time", "new_name": "the new database (optional)"},
    required=("to_time",),
    supports_dry_run=True,
)
async def azure_sql_restore(ctx: ActionContext, args: Mapping[str, Any]) -> Any:
    from opsbook.backup.azuresql import parse_target  # noqa: PLC0415

    az = _azure(ctx)
    when = parse_target(str(args["to_time"]))

    def work(db: Any, *, workspace: Any, settings: Any, environment: str, actor: str) -> Any:
        plan = az.restore_plan(target_time=when, new_name=args.get("new_name") or None)
        return {"commands": az.run(plan, db=db, actor=actor, execution_id=ctx.execution_id)}

    return await _call(ctx, work)


@action(
    "azure.sql_failover",
    description="Make the DR server the primary of the Azure SQL failover group (az sql"
    " failover-group set-primary), checked; the commands are shown in a dry run.",
    args={"allow_data_loss": "a forced failover when the primary is unreachable (default false)"},
    supports_dry_run=True,
)
async def azure_sql_failover(ctx: ActionContext, args: Mapping[str, Any]) -> Any:
    az = _azure(ctx)
    loss = _bool(args, "allow_data_loss", False)

    def work(db: Any, *, workspace: Any, settings: Any, environment: str, actor: str) -> Any:
        plan = az.failover_plan(allow_data_loss=loss)
        return {"commands": az.run(plan, db=db, actor=actor, execution_id=ctx.execution_id)}

    return await _call(ctx, work)


ACTIONS: Mapping[str, ActionSpec] = {
    spec.name: spec
    for spec in (
        take,
        verify,
        check,
        prune,
        recover_prepare,
        recover_cutover,
        dr_status,
        dr_setup,
        dr_failover,
        dr_failback,
        azure_sql_restore,
        azure_sql_failover,
    )
}
