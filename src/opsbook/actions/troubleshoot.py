"""Runbook actions of troubleshooting (issue 12): ``troubleshoot.diagnose``.

The result is the diagnosis (:mod:`opsbook.troubleshoot`) without its raw facts (they go to the
bundle), so a ``decide`` can branch on ``steps.<id>.result.top.cause`` and a step can run
``steps.<id>.result.top.procedure``. The step's result is journaled with the run.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from opsbook.actions._registry import ActionContext, ActionSpec, action
from opsbook.errors import ValidationError

_NAME = "troubleshoot.diagnose"


def _opt(args: Mapping[str, Any], key: str) -> str | None:
    value = args.get(key)
    if value is None or str(value).strip() == "":
        return None
    if not isinstance(value, str | int):
        raise ValidationError(
            f"{_NAME}: {key} must be a name, not {value!r}",
            field=key,
            hint=f"e.g. {_NAME}: {{service: payment}}",
        )
    return str(value).strip()


@action(
    _NAME,
    description="Diagnose the environment (focused on a service, alert or incident): ranked"
    " causes with their evidence and the fixing procedure of each.",
    args={
        "service": "the service to focus on (optional)",
        "alert": "an alert's id or fingerprint (optional)",
        "incident": "an incident reference, e.g. INC-3 (optional)",
        "bundle": "write a diagnostic bundle (default true)",
    },
    supports_dry_run=True,
)
async def diagnose(ctx: ActionContext, args: Mapping[str, Any]) -> Any:
    from opsbook.troubleshoot.diagnose import diagnose_async  # noqa: PLC0415
    from opsbook.workspace import Workspace  # noqa: PLC0415

    service, alert, incident = _opt(args, "service"), _opt(args, "alert"), _opt(args, "incident")
    if ctx.dry_run:
        return {
            "would_gather": [
                "platform",
                "health",
                "signals",
                "logs",
                "changes",
                "database",
                "payment_network",
            ],
            "target": {"service": service, "alert": alert, "incident": incident},
            "environment": ctx.environment_name,
        }
    ws = Workspace.load(Path(ctx.workspace))
    ctx.progress(f"diagnosing {service or 'the environment'} on {ctx.environment_name}")
    d = await diagnose_async(
        workspace=ws,
        environment=ctx.environment_name,
        service=service,
        alert=alert,
        incident=incident,
        db=None if alert is None and incident is None else _db(ws),
        write_bundle=bool(args.get("bundle", True)),
        save=False,
        actor=ctx.started_by,
    )
    out = d.to_dict()
    out.pop("facts", None)
    top = out.get("top")
    ctx.progress(
        f"top: {top['cause']} ({top['confidence']}) -> {top['procedure']}"
        if top
        else "nothing above low confidence"
    )
    return out


def _db(ws: Any) -> Any:
    from opsbook.config import Settings  # noqa: PLC0415
    from opsbook.db import open_database  # noqa: PLC0415

    return open_database(Settings.from_env().database_url_for(ws.state_dir))


ACTIONS: Mapping[str, ActionSpec] = {spec.name: spec for spec in (diagnose,)}
