"""Runbook actions of ledger migrations (issue 11): what runbook 03's ``database-migration``
procedure calls.

- ``deploy.lint_migration`` {file}: the migration lint against the environment's ledger and the
  versions running there (``{findings, errors, warnings}``; the runbook expects
  ``result.errors == 0``);
- ``deploy.migrate`` {file, ticket, lock_timeout, statement_timeout, backup}: apply it to the
  sandbox ledger — a backup first, one transaction with the timeouts, the row counts and ledger
  invariants checked, recorded in ``schema_migrations`` and audited
  (:func:`opsbook.deploy.migrate.apply`).

``file`` is relative to the workspace; a path that leads outside it is refused (exit 2)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from opsbook.actions._registry import ActionContext, ActionSpec, action
from opsbook.errors import ValidationError


def workspace_file(root: Path, raw: object) -> Path:
    """``raw`` (relative to the workspace ``root``) as a path inside it, or ValidationError."""
    text = str(raw or "").strip()
    if not text:
        raise ValidationError(
            "file is required",
            field="file",
            hint="the migration file, e.g. migrations/0001_account_display_name.sql",
        )
    base = root.resolve()
    path = (base / text).resolve()
    if not path.is_relative_to(base):
        raise ValidationError(
            f"file {text!r} is outside the workspace",
            field="file",
            hint="migration files live in the workspace's migrations/ directory",
        )
    return path


def _seconds(args: Mapping[str, Any], key: str, default: float) -> float:
    from opsbook.durations import DURATION_HINT, duration_seconds  # noqa: PLC0415

    raw = args.get(key)
    if raw is None or raw == "":
        return default
    try:
        return duration_seconds(raw)
    except ValueError:
        raise ValidationError(
            f"{key} must be a duration, not {raw!r}", field=key, hint=DURATION_HINT
        ) from None


def _backup(args: Mapping[str, Any]) -> bool:
    value = args.get("backup", True)
    if isinstance(value, bool):
        return value
    if str(value).lower() in ("true", "yes", "1"):
        return True
    if str(value).lower() in ("false", "no", "0"):
        return False
    raise ValidationError(f"backup must be true or false, not {value!r}", field="backup")


def _lint(ctx: ActionContext, args: Mapping[str, Any]) -> dict[str, Any]:
    from opsbook.deploy import migrate  # noqa: PLC0415
    from opsbook.workspace import Workspace  # noqa: PLC0415

    ws = Workspace.load(Path(ctx.workspace))
    mig = migrate.read_file(workspace_file(ws.root, args.get("file")), workspace=ws)
    lc = migrate.lint_context(workspace=ws, environment=ctx.environment_name)
    return migrate.lint_report(mig, dialect=lc.dialect, reads=lc.reads, versions=lc.versions)


@action(
    "deploy.lint_migration",
    description="Lint a ledger migration for statements that take long locks or break the"
    " running version (a non-concurrent index build, a column type change, a NOT NULL without"
    " a default, a dropped column still read): findings with file:line and the fix.",
    args={"file": "the migration file, relative to the workspace"},
    required=("file",),
    supports_dry_run=True,
)
async def lint_migration(ctx: ActionContext, args: Mapping[str, Any]) -> Any:
    out = await asyncio.to_thread(_lint, ctx, args)
    ctx.progress(
        f"{out['file']}: {out['errors']} error(s), {out['warnings']} warning(s) ({out['dialect']})"
    )
    for f in out["findings"]:
        if not f["suppressed"]:
            ctx.progress(f"{f['path']}:{f['line']}:{f['column']}: {f['rule']}: {f['message']}")
    return out


@action(
    "deploy.migrate",
    description="Apply a ledger migration to the sandbox: lint, a backup first, one"
    " transaction with lock_timeout and statement_timeout, recorded in schema_migrations, the"
    " row counts and ledger invariants checked after. The same file twice is a no-op.",
    args={
        "file": "the migration file, relative to the workspace",
        "ticket": "the change ticket (CHG-…), recorded with it",
        "lock_timeout": "how long to wait for a lock before giving up (default 5s)",
        "statement_timeout": "how long one statement may run (default 60s)",
        "backup": "take a backup first (default true)",
    },
    required=("file",),
    supports_dry_run=True,
)
async def migrate_action(ctx: ActionContext, args: Mapping[str, Any]) -> Any:
    lock_timeout = _seconds(args, "lock_timeout", 5.0)
    statement_timeout = _seconds(args, "statement_timeout", 60.0)
    backup = _backup(args)
    ticket = str(args.get("ticket") or "").strip() or None
    if ctx.dry_run:
        out = await asyncio.to_thread(_lint, ctx, args)
        return {
            "would_apply": out["file"],
            "environment": ctx.environment_name,
            "backup": backup,
            "lock_timeout_s": lock_timeout,
            "statement_timeout_s": statement_timeout,
            **{k: out[k] for k in ("findings", "errors", "warnings")},
        }

    def work() -> Any:
        from opsbook.config import Settings  # noqa: PLC0415
        from opsbook.db import open_database  # noqa: PLC0415
        from opsbook.deploy import migrate  # noqa: PLC0415
        from opsbook.workspace import Workspace  # noqa: PLC0415

        ws = Workspace.load(Path(ctx.workspace))
        path = workspace_file(ws.root, args.get("file"))
        settings = Settings.from_env()
        db = open_database(settings.database_url_for(ws.state_dir))
        try:
            return migrate.apply(
                db=db,
                workspace=ws,
                settings=settings,
                environment=ctx.environment_name,
                path=path,
                actor=ctx.started_by,
                ticket=ticket,
                lock_timeout=lock_timeout,
                statement_timeout=statement_timeout,
                backup=backup,
                execution_id=ctx.execution_id,
            )
        finally:
            db.close()

    ctx.progress(
        f"applying {args.get('file')} to the ledger of {ctx.environment_name}"
        f"{' after a backup' if backup else ''}"
    )
    out = await asyncio.to_thread(work)
    ctx.progress(str(out["message"]))
    return out


ACTIONS: Mapping[str, ActionSpec] = {spec.name: spec for spec in (lint_migration, migrate_action)}
