"""Console pages for security operations (issue 14): /security shows the latest check run per
check (with its PCI DSS requirements), the open findings and their due dates, access review
campaigns, just-in-time grants and recent detection hits; /security/findings/{ref} shows one
finding with its acceptances. Read-only: changes go through `opsbook security|findings|access`
(each audited)."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from opsbook.api.auth import context_of, principal_of
from opsbook.users.access import require
from opsbook.web.render import render

router = APIRouter(include_in_schema=False)


def _latest_checks(db: Any) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    from opsbook.secops.catalogue import CATALOGUE  # noqa: PLC0415

    scan = db.one(
        "SELECT * FROM security_scans WHERE kind = 'checks' ORDER BY started_at DESC LIMIT 1"
    )
    latest: dict[str, dict[str, Any]] = {}
    for r in db.query(
        "SELECT r.check_id, r.status, r.failures, r.detail, s.started_at FROM security_results r"
        " JOIN security_scans s ON s.id = r.scan_id ORDER BY s.started_at"
    ):
        latest[r["check_id"]] = r
    rows = []
    for c in CATALOGUE.values():
        r = latest.get(c.id)
        detail = json.loads(r["detail"]) if r else {}
        rows.append(
            {
                "id": c.id,
                "title": c.title,
                "severity": c.severity,
                "requirements": ", ".join(c.requirements),
                "status": r["status"] if r else "not run",
                "at": r["started_at"][:19] if r else "",
                "failures": detail.get("failures", []),
            }
        )
    return scan, rows


@router.get("/security")
async def security(request: Request) -> Response:
    from opsbook.secops import access, findings, jit  # noqa: PLC0415

    ctx = context_of(request)
    who = principal_of(request)
    require(db=ctx.db, principal=who, permission="runbooks:read", subject="security")
    scan, checks = _latest_checks(ctx.db)
    return render(
        request,
        "security.html",
        principal=who,
        scan=scan,
        checks=checks,
        findings=findings.list_findings(ctx.db, state="open", limit=200),
        accepted=findings.list_findings(ctx.db, state="accepted", limit=50),
        campaigns=access.list_campaigns(ctx.db)[:10],
        grants=[g for g in jit.list_grants(ctx.db) if g["state"] in ("pending", "active")],
        hits=ctx.db.query(
            "SELECT title, level, environment, group_key, events, last_ts, created_at"
            " FROM security_detection_hits ORDER BY id DESC LIMIT 20"
        ),
        finding=None,
    )


@router.get("/security/findings/{ref}")
async def finding_page(request: Request, ref: str) -> Response:
    from opsbook.secops import findings  # noqa: PLC0415

    ctx = context_of(request)
    who = principal_of(request)
    require(db=ctx.db, principal=who, permission="runbooks:read", subject=f"finding:{ref}")
    return render(request, "security.html", principal=who, finding=findings.get(ctx.db, ref))
