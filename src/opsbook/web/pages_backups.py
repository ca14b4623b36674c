"""Console page for backup and recovery (issue 13): /backups shows, per environment, the backup
catalogue (newest first: method, size, copies, verification by restore), the freshness and
health checks, and where the ledger runs (primary, DR replica, replication lag). Read-only:
changes go through `opsbook backups|recover|dr` and runbook 05 (each audited)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from opsbook.api.auth import context_of, principal_of
from opsbook.errors import OpsbookError
from opsbook.users.access import require
from opsbook.web.render import render

router = APIRouter(include_in_schema=False)


def _size(n: int | None) -> str:
    n = int(n or 0)
    return "-" if not n else f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n / 1024:.1f} KiB"


def _view(b: dict[str, Any]) -> dict[str, Any]:
    result = b.get("verify_result") or {}
    return {
        "id": b["id"],
        "state": b["state"],
        "method": b["method"],
        "retention": b["retention"],
        "started": str(b["started_at"])[:19],
        "size": _size(b.get("raw_bytes")),
        "stored": _size(b.get("stored_bytes")),
        "copies": ", ".join(c["location"] for c in b.get("copies") or []),
        "verified": (
            "never"
            if not b.get("verified_at")
            else f"{str(b['verified_at'])[:19]} {'OK' if b.get('verify_ok') else 'FAILED'}"
        ),
        "problems": result.get("problems") or ([b["error"]] if b.get("error") else []),
    }


@router.get("/backups")
async def backups(request: Request, env: str | None = None) -> Response:
    from opsbook.backup import catalogue, dr, health  # noqa: PLC0415

    ctx = context_of(request)
    who = principal_of(request)
    require(db=ctx.db, principal=who, permission="runbooks:read", subject="backups")
    environment = env or ctx.workspace.default_environment
    rows = [_view(b) for b in catalogue.list_backups(ctx.db, environment=environment, limit=50)]
    try:
        checks = [
            c.to_dict()
            for c in health.check(ctx.db, workspace=ctx.workspace, environment=environment)
        ]
        checks_error = None
    except OpsbookError as exc:
        checks, checks_error = [], exc.message
    try:
        region: dict[str, Any] | None = dr.status(workspace=ctx.workspace, environment=environment)
        region_error = None
    except OpsbookError as exc:
        region, region_error = None, exc.message
    return render(
        request,
        "backups.html",
        principal=who,
        environment=environment,
        backups=rows,
        checks=checks,
        checks_error=checks_error,
        region=region,
        region_error=region_error,
    )
