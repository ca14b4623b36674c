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


def _open(ctx: ActionContext) -> tuple[Any, Any, Any]:
    from opsbook.config import Settings  # noqa: PLC0415
    from opsbook.db import open_database  # noqa: PLC0415
    from opsbook.workspace import Workspace  # noqa: PLC0415

    ws = Workspace.load(Path(ctx.workspace))
    settings = Settings.from_env()
    return ws, settings, open_database(settings.database_url_for(ws.state_dir))


@action(
    "security.scan",
    description="Audit what runs with pip-audit and record the vulnerabilities as findings"
    " (an unreachable vulnerability service is an error, never a pass).",
    args={"offline": "a recorded pip-audit JSON output to use instead (optional)"},
    supports_dry_run=True,
)
async def scan(ctx: ActionContext, args: Mapping[str, Any]) -> Any:
    import asyncio  # noqa: PLC0415

    from opsbook.secops import findings  # noqa: PLC0415
    from opsbook.secops.settings import load_security_settings  # noqa: PLC0415
    from opsbook.secops.vulns import scan as run_scan  # noqa: PLC0415

    offline = args.get("offline")
    if offline is not None and not isinstance(offline, str):
        raise ValidationError("security.scan: offline must be a file path", field="offline")
    if ctx.dry_run:
        return {"would_run": ["pip-audit of what runs"], "offline": offline}
    ws, _, db = _open(ctx)
    try:
        path = Path(offline) if offline else None
        if path is not None and not path.is_absolute():
            path = ws.root / path
        result = await asyncio.to_thread(run_scan, environment=ctx.environment_name, offline=path)
        summary = None
        if result.error is None:
            summary = findings.ingest(
                db,
                kind="pip-audit",
                environment=ctx.environment_name,
                source="pip-audit",
                inputs=result.findings,
                complete=True,
                actor=ctx.started_by,
                settings=load_security_settings(ws),
            )
    finally:
        db.close()
    ctx.progress(
        f"{result.audited} of {result.scanned} packages audited,"
        f" {len(result.findings)} vulnerabilities" + (f"; {result.error}" if result.error else "")
    )
    return {**result.to_dict(), "scan": summary}


@action(
    "security.sbom",
    description="Write a CycloneDX SBOM of what runs into the workspace's evidence.",
    args={},
    supports_dry_run=True,
)
async def sbom(ctx: ActionContext, args: Mapping[str, Any]) -> Any:
    import json  # noqa: PLC0415
    from datetime import UTC, datetime  # noqa: PLC0415

    from opsbook import __version__  # noqa: PLC0415
    from opsbook.platforms import platform_for  # noqa: PLC0415
    from opsbook.secops.sbom import build_sbom  # noqa: PLC0415
    from opsbook.workspace import Workspace  # noqa: PLC0415

    ws = Workspace.load(Path(ctx.workspace))
    target = ws.state_dir / "evidence" / f"sbom-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.cdx.json"
    if ctx.dry_run:
        return {"would_write": str(target)}
    platform = platform_for(
        environment=ctx.environment, workspace=ctx.workspace, env_name=ctx.environment_name
    )
    services = (await platform.status()).get("services", [])
    doc = build_sbom(services=services, version=__version__)
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    target.write_text(json.dumps(doc, indent=1), encoding="utf-8")
    apps = [c for c in doc.get("components", []) if c.get("type") == "application"]
    return {
        "file": str(target),
        "components": len(doc.get("components", [])),
        "services": len(apps),
    }


@action(
    "security.access_review",
    description="Start an access review campaign (every grant to a reviewer) or close one"
    " (its revocations applied).",
    args={
        "action": "start or close",
        "reviewers": "start: who reviews (a list; never their own access)",
        "campaign": "close: the campaign, e.g. AR-1",
    },
    required=("action",),
    supports_dry_run=True,
)
async def access_review(ctx: ActionContext, args: Mapping[str, Any]) -> Any:
    from datetime import UTC, datetime  # noqa: PLC0415

    from opsbook.secops import access  # noqa: PLC0415

    what = args.get("action")
    if what not in ("start", "close"):
        raise ValidationError("security.access_review: action is start or close", field="action")
    if ctx.dry_run:
        return {"would": f"{what} an access review on {ctx.environment_name}"}
    ws, _, db = _open(ctx)
    data_dir = None
    if ctx.environment.get("platform", "local") == "local":
        from opsbook.sandbox.lifecycle import data_dir_of  # noqa: PLC0415

        data_dir = data_dir_of(workspace=ws, env_name=ctx.environment_name)
    try:
        if what == "start":
            reviewers = args.get("reviewers")
            if isinstance(reviewers, str):
                reviewers = [r.strip() for r in reviewers.split(",") if r.strip()]
            if not isinstance(reviewers, list) or not reviewers:
                raise ValidationError(
                    "security.access_review: reviewers is a list of people", field="reviewers"
                )
            now = datetime.now(UTC)
            grants = access.opsbook_grants(db, now=now) + (
                access.sandbox_grants(data_dir) if data_dir else []
            )
            c = access.start(
                db,
                name=f"{now.year}-Q{(now.month - 1) // 3 + 1} {ctx.environment_name}",
                environment=ctx.environment_name,
                reviewers=[str(r) for r in reviewers],
                actor=ctx.started_by,
                grants=grants,
            )
        else:
            campaign = args.get("campaign")
            if not isinstance(campaign, str) or not campaign:
                raise ValidationError(
                    "security.access_review: close needs campaign", field="campaign"
                )
            c = access.close(db, campaign=campaign, actor=ctx.started_by, data_dir=data_dir)
    finally:
        db.close()
    ctx.progress(f"{c['ref']}: {len(c['items'])} grants, {c['pending']} undecided, {c['state']}")
    return {
        "ref": c["ref"],
        "state": c["state"],
        "grants": len(c["items"]),
        "pending": c["pending"],
        "result": c["result"],
    }


ACTIONS: Mapping[str, ActionSpec] = {spec.name: spec for spec in (check, scan, sbom, access_review)}
