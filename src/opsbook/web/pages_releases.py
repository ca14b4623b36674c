"""Console pages for releases (issue 11): /releases lists an environment's releases, newest
first, with how each ended and a DORA summary of the last 30 days; /releases/{id} shows a
release's change record (PCI DSS 4.0.1 6.5.1: ticket, reason, security impact, approvals,
testing evidence, back-out plan, outcome, the executions and every rollout decision).
Read-only: deployments go through `opsbook deploy` and runbook 03 (each audited)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from opsbook.api.auth import context_of, principal_of
from opsbook.db import Database
from opsbook.errors import OpsbookError
from opsbook.users.access import require
from opsbook.web.render import render

router = APIRouter(include_in_schema=False)

#: How many releases the list shows (the CLI pages further: opsbook releases list --limit).
LIMIT = 100
DORA_DAYS = 30
#: A release state -> the console's state colour (console.css .state-*).
BADGE = {
    "promoted": "succeeded",
    "aborted": "aborted",
    "rolled_back": "failed",
    "refused": "failed",
    "failed": "failed",
    "running": "running",
    "requested": "pending",
    "cancelled": "skipped",
}
VERDICT = {
    "successful": "succeeded",
    "failed": "failed",
    "error": "failed",
    "inconclusive": "waiting",
}
#: Keys of a rollout decision that have a column of their own (or are not worth showing).
_COLUMNS = ("at", "t", "kind", "step", "weight", "metric", "value", "baseline", "condition")
_HIDDEN = (*_COLUMNS, "verdict", "provider", "requests", "query")


def badge(state: str) -> dict[str, str]:
    """How a release state is shown: its label and its colour class."""
    return {"state": state, "label": state.replace("_", " "), "css": BADGE.get(state, "unknown")}


def _row(rel: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": rel["id"],
        "requested_at": rel["requested_at"],
        "service": rel["service"],
        "previous": rel.get("previous_version") or "?",
        "version": rel["version"],
        "strategy": rel["strategy"],
        "ticket": rel["ticket"],
        "requested_by": rel["requested_by"],
        "emergency": rel["emergency"],
        "detail": rel.get("detail"),
        **badge(str(rel["state"])),
    }


def _decision(d: dict[str, Any]) -> dict[str, Any]:
    """One rollout decision as a table row: the columns, the rest as a short detail."""
    rest = {k: v for k, v in d.items() if k not in _HIDDEN and v not in (None, "")}
    reason = rest.pop("reason", None)
    detail = "; ".join([*([str(reason)] if reason else []), *(f"{k} {v}" for k, v in rest.items())])
    verdict = d.get("verdict")
    return {
        "at": d.get("at"),
        "t": d.get("t"),
        "kind": d.get("kind", ""),
        "step": d.get("step"),
        "weight": d.get("weight"),
        "metric": d.get("metric"),
        "value": d.get("value"),
        "baseline": d.get("baseline"),
        "condition": d.get("condition"),
        "verdict": verdict,
        "verdict_css": VERDICT.get(str(verdict), "unknown"),
        "detail": detail,
        "query": d.get("query"),
    }


def _dora(db: Database) -> tuple[dict[str, Any] | None, str | None]:
    """The DORA summary of the last 30 days (production tier, every environment), as
    ``opsbook releases dora`` computes it; or why it is not available."""
    from opsbook.deploy import dora, records  # noqa: PLC0415

    until = datetime.now(UTC)
    since = until - timedelta(days=DORA_DAYS)
    try:
        rows = records.dora_rows(db, since=since.strftime("%Y-%m-%dT%H:%M:%S"), until="9999")
        report = dora.compute(releases=rows, since=since, until=until)
    except OpsbookError as exc:
        return None, exc.message
    out = report.to_dict()
    lead, restore = report.lead_time_median_s, report.restore_median_s
    out["lead_time"] = None if lead is None else dora.human(lead)
    out["restore"] = None if restore is None else dora.human(restore)
    out["days_shown"] = DORA_DAYS
    return out, None


@router.get("/releases")
async def releases(request: Request, env: str | None = None) -> Response:
    from opsbook.deploy import records  # noqa: PLC0415

    ctx = context_of(request)
    who = principal_of(request)
    require(db=ctx.db, principal=who, permission="runbooks:read", subject="releases")
    environment = env or ctx.workspace.default_environment
    names = ctx.workspace.environment_names()
    rows = [_row(r) for r in records.list_releases(ctx.db, environment=environment, limit=LIMIT)]
    summary, dora_error = _dora(ctx.db)
    return render(
        request,
        "releases.html",
        principal=who,
        environment=environment,
        environments=names if environment in names else [*names, environment],
        unknown_environment=bool(names) and environment not in names,
        releases=rows,
        limit=LIMIT,
        dora=summary,
        dora_error=dora_error,
    )


@router.get("/releases/{release_id}")
async def release(request: Request, release_id: str) -> Response:
    from opsbook.deploy import records  # noqa: PLC0415

    ctx = context_of(request)
    who = principal_of(request)
    require(db=ctx.db, principal=who, permission="runbooks:read", subject=f"release:{release_id}")
    record = records.change_record(ctx.db, release_id)  # NotFoundError: the 404 page
    rel = records.get(ctx.db, release_id)
    evidence = record.get("testing_evidence") or {}
    return render(
        request,
        "release.html",
        principal=who,
        rec=record,
        rel=rel,
        outcome=badge(str(record["outcome"])),
        previous=rel.get("previous_version") or "?",
        checklist=evidence.get("checklist") or [],
        staging=evidence.get("staging") or [],
        decisions=[_decision(d) for d in record.get("decisions") or []],
    )
