"""Containment actions of security operations (issue 14), each with its reverse:

- ``platform.isolate`` / ``platform.release``: a service at its front door (the sandbox's port
  and gateway answer 403 ``isolated``; Kubernetes: the ``quarantine`` NetworkPolicy label); its
  processes keep running for forensics.
- ``platform.freeze_account`` / ``platform.unfreeze_account``: a ledger account may not send or
  receive money (423) until released.
- ``security.revoke_access`` / ``security.restore_access``: every opsbook API token and console
  session of a person is revoked, the account disabled, and the platform account of that name
  (the sandbox's identities) disabled; the reverse re-enables the accounts. Revoked tokens stay
  revoked (a new one is issued on request): that part has no reverse, by design.
- ``security.forensic_snapshot``: logs, process list and a copy of the ledger, hashed, with a
  chain-of-custody record (:mod:`opsbook.secops.forensics`).

The runbook puts an approval before the ones that change things; every change is audited."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from opsbook.actions._registry import ActionContext, ActionSpec, action
from opsbook.actions.platform import platform_of, service_arg
from opsbook.errors import ValidationError

_TICKET = re.compile(r"^[A-Z]+-[0-9]+$")
_USER = re.compile(r"^[A-Za-z0-9._@-]{1,80}$")


def _ticket(args: Mapping[str, Any]) -> str | None:
    raw = args.get("ticket")
    if raw in (None, ""):
        return None
    if not isinstance(raw, str) or not _TICKET.match(raw):
        raise ValidationError(f"ticket must look like INC-7, not {raw!r}", field="ticket")
    return raw


def _account(args: Mapping[str, Any], name: str) -> int:
    try:
        return int(args.get("account"))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValidationError(
            f"{name}: account must be a ledger account id", field="account"
        ) from None


async def _contain(ctx: ActionContext, verb: str, **kw: Any) -> Any:
    out = await platform_of(ctx).contain(action=verb, **kw)
    what = kw.get("service") or kw.get("account")
    if not ctx.dry_run:
        from opsbook import audit  # noqa: PLC0415

        db = _db(ctx)
        try:
            audit.record(
                db=db,
                actor=ctx.started_by,
                action=f"security.containment.{verb}",
                subject=f"service:{what}" if kw.get("service") else f"ledger-account:{what}",
                payload={
                    "environment": ctx.environment_name,
                    "ticket": kw.get("ticket"),
                    "changed": out.get("changed") if isinstance(out, dict) else None,
                },
                execution_id=ctx.execution_id,
            )
        finally:
            db.close()
    ctx.progress(f"{verb}: {what}")
    return out


@action(
    "platform.isolate",
    description="Isolate a service at its front door; its processes keep running (forensics).",
    args={"service": "the service", "ticket": "the incident, e.g. INC-7"},
    required=("service",),
    supports_dry_run=True,
)
async def isolate(ctx: ActionContext, args: Mapping[str, Any]) -> Any:
    return await _contain(
        ctx, "isolate", service=service_arg(args, "platform.isolate"), ticket=_ticket(args)
    )


@action(
    "platform.release",
    description="Release an isolated service: traffic reaches it again.",
    args={"service": "the service", "ticket": "the incident"},
    required=("service",),
    supports_dry_run=True,
)
async def release(ctx: ActionContext, args: Mapping[str, Any]) -> Any:
    return await _contain(
        ctx, "release", service=service_arg(args, "platform.release"), ticket=_ticket(args)
    )


@action(
    "platform.freeze_account",
    description="Freeze a ledger account: no money moves from or to it until unfrozen.",
    args={"account": "the ledger account id", "ticket": "the incident"},
    required=("account",),
    supports_dry_run=True,
)
async def freeze(ctx: ActionContext, args: Mapping[str, Any]) -> Any:
    return await _contain(
        ctx,
        "freeze",
        account=_account(args, "platform.freeze_account"),
        ticket=_ticket(args),
    )


@action(
    "platform.unfreeze_account",
    description="Unfreeze a ledger account.",
    args={"account": "the ledger account id", "ticket": "the incident"},
    required=("account",),
    supports_dry_run=True,
)
async def unfreeze(ctx: ActionContext, args: Mapping[str, Any]) -> Any:
    return await _contain(
        ctx,
        "unfreeze",
        account=_account(args, "platform.unfreeze_account"),
        ticket=_ticket(args),
    )


def _user(args: Mapping[str, Any], name: str) -> str:
    user = args.get("username")
    if not isinstance(user, str) or not _USER.match(user):
        raise ValidationError(f"{name}: username is required (a login name)", field="username")
    return user


def _db(ctx: ActionContext) -> Any:
    from opsbook.config import Settings  # noqa: PLC0415
    from opsbook.db import open_database  # noqa: PLC0415
    from opsbook.workspace import Workspace  # noqa: PLC0415

    ws = Workspace.load(Path(ctx.workspace))
    return open_database(Settings.from_env().database_url_for(ws.state_dir))


def _sandbox_dir(ctx: ActionContext) -> Path | None:
    if ctx.environment.get("platform", "local") != "local":
        return None
    from opsbook.sandbox.lifecycle import data_dir_of  # noqa: PLC0415
    from opsbook.workspace import Workspace  # noqa: PLC0415

    return data_dir_of(workspace=Workspace.load(Path(ctx.workspace)), env_name=ctx.environment_name)


@action(
    "security.revoke_access",
    description="Revoke every API token and session of a person and disable their accounts"
    " (opsbook and the platform's).",
    args={"username": "the person's login", "ticket": "the incident"},
    required=("username",),
    supports_dry_run=True,
)
async def revoke_access(ctx: ActionContext, args: Mapping[str, Any]) -> Any:
    from opsbook import audit  # noqa: PLC0415
    from opsbook.errors import ConflictError  # noqa: PLC0415
    from opsbook.users.accounts import find_account, set_disabled  # noqa: PLC0415
    from opsbook.users.tokens import list_tokens, revoke_token  # noqa: PLC0415

    user, ticket = _user(args, "security.revoke_access"), _ticket(args)
    if ctx.dry_run:
        return {"would_revoke": f"every token and session of {user}; disable {user}"}
    db = _db(ctx)
    try:
        tokens = (
            [t.id for t in list_tokens(db=db, username=user) if t.revoked_at is None]
            if (find_account(db=db, username=user))
            else []
        )
        for t in tokens:
            revoke_token(db=db, actor=ctx.started_by, token_id=t)
        with db.transaction():
            row = db.one("SELECT id FROM users WHERE username = ?", (user,))
            sessions = (
                db.execute("DELETE FROM sessions WHERE user_id = ?", (row["id"],)) if row else 0
            )
        disabled = False
        if row:
            try:
                set_disabled(db=db, actor=ctx.started_by, username=user, disabled=True)
                disabled = True
            except ConflictError:
                disabled = False  # the last admin: tokens and sessions are gone anyway
        platform = False
        data_dir = _sandbox_dir(ctx)
        if data_dir is not None:
            from opsbook.sandbox import iam  # noqa: PLC0415

            platform = iam.set_disabled(data_dir, name=user, disabled=True)
        out = {
            "username": user,
            "tokens_revoked": tokens,
            "sessions_ended": sessions,
            "opsbook_account_disabled": disabled,
            "platform_account_disabled": platform,
            "ticket": ticket,
        }
        audit.record(
            db=db,
            actor=ctx.started_by,
            action="security.access.revoked",
            subject=f"user:{user}",
            payload=out,
            execution_id=ctx.execution_id,
        )
    finally:
        db.close()
    ctx.progress(f"{user}: {len(tokens)} token(s) revoked, {sessions} session(s) ended")
    return out


@action(
    "security.restore_access",
    description="Re-enable a person's accounts after an investigation (revoked tokens stay"
    " revoked: new ones are issued on request).",
    args={"username": "the person's login", "ticket": "the incident"},
    required=("username",),
    supports_dry_run=True,
)
async def restore_access(ctx: ActionContext, args: Mapping[str, Any]) -> Any:
    from opsbook import audit  # noqa: PLC0415
    from opsbook.users.accounts import find_account, set_disabled  # noqa: PLC0415

    user, ticket = _user(args, "security.restore_access"), _ticket(args)
    if ctx.dry_run:
        return {"would_enable": user}
    db = _db(ctx)
    try:
        account = find_account(db=db, username=user)
        if account is not None and account.disabled:
            set_disabled(db=db, actor=ctx.started_by, username=user, disabled=False)
        platform = False
        data_dir = _sandbox_dir(ctx)
        if data_dir is not None:
            from opsbook.sandbox import iam  # noqa: PLC0415

            platform = iam.set_disabled(data_dir, name=user, disabled=False)
        out = {
            "username": user,
            "opsbook_account_enabled": account is not None,
            "platform_account_enabled": platform,
            "ticket": ticket,
        }
        audit.record(
            db=db,
            actor=ctx.started_by,
            action="security.access.restored",
            subject=f"user:{user}",
            payload=out,
            execution_id=ctx.execution_id,
        )
    finally:
        db.close()
    return out


@action(
    "security.forensic_snapshot",
    description="Copy a service's logs, the process list and the ledger into evidence, hashed,"
    " with a chain-of-custody record.",
    args={"service": "the service", "ticket": "the incident"},
    required=("service",),
    supports_dry_run=True,
)
async def forensic_snapshot(ctx: ActionContext, args: Mapping[str, Any]) -> Any:
    import asyncio  # noqa: PLC0415

    from opsbook.sandbox.config import check_service  # noqa: PLC0415
    from opsbook.secops.forensics import take_snapshot  # noqa: PLC0415
    from opsbook.workspace import Workspace  # noqa: PLC0415

    service = check_service(service_arg(args, "security.forensic_snapshot"))
    ticket = _ticket(args)
    data_dir = _sandbox_dir(ctx)
    if data_dir is None:
        raise ValidationError(
            "security.forensic_snapshot copies the sandbox's files; in production take disk"
            " snapshots of the nodes (the runbook's checklist)",
            field="environment",
        )
    ws = Workspace.load(Path(ctx.workspace))
    evidence = ws.state_dir / "evidence"
    if ctx.dry_run:
        return {"would_copy": [f"{service} logs", "process list", "ledger"], "into": str(evidence)}
    status = await platform_of(ctx).status()
    from opsbook.sandbox.lifecycle import load_config  # noqa: PLC0415

    cfg = load_config(workspace=ws, env_name=ctx.environment_name)
    ledger = (
        Path(cfg.database_url.removeprefix("sqlite:///"))
        if cfg.database_url.startswith("sqlite:///")
        else None
    )
    db = _db(ctx)
    try:
        full = {"services": status.get("services", [])}
        if not any(s.get("pods") for s in full["services"]):
            from opsbook.sandbox.control import Control  # noqa: PLC0415

            full = await Control.for_data_dir(data_dir).acall("status", {})
        out = await asyncio.to_thread(
            take_snapshot,
            db,
            evidence_dir=evidence,
            data_dir=data_dir,
            status=full,
            service=service,
            environment=ctx.environment_name,
            actor=ctx.started_by,
            ticket=ticket,
            execution_id=ctx.execution_id,
            ledger_path=ledger,
        )
    finally:
        db.close()
    ctx.progress(
        f"evidence {out['id']}: {len(out['files'])} files, manifest {out['manifest_sha256'][:12]}"
    )
    return out


ACTIONS: Mapping[str, ActionSpec] = {
    spec.name: spec
    for spec in (
        isolate,
        release,
        freeze,
        unfreeze,
        revoke_access,
        restore_access,
        forensic_snapshot,
    )
}
