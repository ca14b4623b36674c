"""Runbook actions of security operations (issue 14): ``security.check``.

Runs checks of the catalogue (all, one family, or named ids), records the scan and moves the
findings like `opsbook security check`, and returns counts an ``expect`` block can test::

    result.counts.error == 0          # every check ran
    result.at_least.high == 0         # no failure of high severity or worse
    result.failed.size() == 0         # no check failed at all
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from opsbook.actions._registry import ActionContext, ActionSpec, action
from opsbook.errors import ValidationError

_NAME = "security.check"


def _ids(args: Mapping[str, Any]) -> list[str]:
    from opsbook.secops.catalogue import CATALOGUE  # noqa: PLC0415

    family, checks = args.get("family"), args.get("checks")
    if family is not None and checks is not None:
        raise ValidationError(
            f"{_NAME}: give family or checks, not both", field="family", hint="family: tls"
        )
    if family is not None:
        picked = [c.id for c in CATALOGUE.values() if c.family == str(family)]
        if not picked:
            families = sorted({c.family for c in CATALOGUE.values()})
            raise ValidationError(
                f"{_NAME}: unknown family {family!r}",
                field="family",
                hint=f"one of: {', '.join(families)}",
            )
        return picked
    if checks is None:
        return []
    if isinstance(checks, str):
        checks = [checks]
    if not isinstance(checks, list):
        raise ValidationError(
            f"{_NAME}: checks must be a list of check ids",
            field="checks",
            hint="checks: [tls.protocols, tls.cert-expiry]",
        )
    for c in checks:
        if str(c) not in CATALOGUE:
            raise ValidationError(
                f"{_NAME}: unknown check {c!r}",
                field="checks",
                hint="`opsbook security checks` lists them",
            )
    return [str(c) for c in checks]


def summarize(run: dict[str, Any]) -> dict[str, Any]:
    from opsbook.secops.model import SEVERITIES, at_least  # noqa: PLC0415

    severities = [f["severity"] for r in run["results"] for f in r["failures"]]
    return {
        **run,
        "failed": [r["id"] for r in run["results"] if r["status"] == "fail"],
        "errors": [r["id"] for r in run["results"] if r["status"] == "error"],
        "at_least": {s: sum(1 for v in severities if at_least(v, s)) for s in SEVERITIES},
    }


@action(
    _NAME,
    description="Run security checks of the catalogue (PCI DSS 4.0.1 mapped) against the"
    " environment; record the findings.",
    args={
        "family": "tls, identity, data, workspace, audit, platform or program (optional)",
        "checks": "check ids to run (optional; default all)",
        "record": "record the scan and move findings (default true)",
    },
    supports_dry_run=True,
)
async def check(ctx: ActionContext, args: Mapping[str, Any]) -> Any:
    from opsbook.config import Settings  # noqa: PLC0415
    from opsbook.db import open_database  # noqa: PLC0415
    from opsbook.secops.catalogue import CATALOGUE  # noqa: PLC0415
    from opsbook.secops.service import check_and_record  # noqa: PLC0415
    from opsbook.workspace import Workspace  # noqa: PLC0415

    ids = _ids(args)
    if ctx.dry_run:
        return {"would_run": ids or list(CATALOGUE), "environment": ctx.environment_name}
    ws = Workspace.load(Path(ctx.workspace))
    settings = Settings.from_env()
    db = open_database(settings.database_url_for(ws.state_dir))
    try:
        run, scan = await check_and_record(
            workspace=ws,
            environment=ctx.environment_name,
            db=db,
            settings=settings,
            actor=ctx.started_by,
            only=ids,
            source=f"execution:{ctx.execution_id}",
            record=bool(args.get("record", True)),
        )
    finally:
        db.close()
    out = summarize(run.to_dict())
    out["scan"] = scan
    for r in out["results"]:
        if r["status"] in ("fail", "error"):
            ctx.progress(
                f"{r['status'].upper()} {r['id']}: {r['error'] or r['failures'][0]['text']}"
            )
    ctx.progress(
        f"{len(out['results'])} checks: {len(out['failed'])} failed, {len(out['errors'])} errors"
    )
    return out


ACTIONS: Mapping[str, ActionSpec] = {spec.name: spec for spec in (check,)}
