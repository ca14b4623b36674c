"""Console pages for log search and request tracing (issue 12): ``/logs?q=…&since=…`` searches
the sandbox's service logs with the query language of `opsbook logs search`; ``/logs/trace/{id}``
follows one request through the services' logs and the ledger. Both need ``monitoring:read``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Query
from starlette.requests import Request
from starlette.responses import Response

from opsbook.api.auth import context_of, principal_of
from opsbook.errors import OpsbookError
from opsbook.users.access import require
from opsbook.web.render import render

router = APIRouter(include_in_schema=False)
READ = "monitoring:read"
Since = Annotated[str, Query(max_length=12, pattern=r"^$|^[0-9]+(\.[0-9]+)?(s|m|h|d)$")]


def _paths(request: Request, env: str) -> tuple[str, str]:
    from opsbook.sandbox.lifecycle import load_config  # noqa: PLC0415

    cfg = load_config(workspace=context_of(request).workspace, env_name=env)
    return str(cfg.data_path / "logs"), cfg.database_url


@router.get("/logs")
async def logs(
    request: Request,
    q: Annotated[str, Query(max_length=500)] = "",
    since: Since = "15m",
) -> Response:
    from pathlib import Path  # noqa: PLC0415

    from opsbook.durations import duration_seconds  # noqa: PLC0415
    from opsbook.troubleshoot.logsearch import search  # noqa: PLC0415

    ctx = context_of(request)
    who = principal_of(request)
    require(db=ctx.db, principal=who, permission=READ, subject="logs")
    found, error = None, None
    if q:
        try:
            log_dir, _ = _paths(request, ctx.workspace.default_environment)
            start = datetime.now(UTC) - timedelta(seconds=duration_seconds(since or "15m"))
            found = search(log_dir=Path(log_dir), query=q, since=start, limit=200)
        except OpsbookError as exc:
            error = exc
    return render(
        request, "logs.html", principal=who, q=q, since=since, found=found, error=error, trace=None
    )


@router.get("/logs/trace/{request_id}")
async def trace_page(request: Request, request_id: str) -> Response:
    from pathlib import Path  # noqa: PLC0415

    from opsbook.troubleshoot.logsearch import trace  # noqa: PLC0415

    ctx = context_of(request)
    who = principal_of(request)
    require(db=ctx.db, principal=who, permission=READ, subject=f"logs:trace:{request_id[:64]}")
    log_dir, ledger = _paths(request, ctx.workspace.default_environment)
    t = trace(log_dir=Path(log_dir), request_id=request_id, ledger_url=ledger)
    return render(
        request, "logs.html", principal=who, q="", since="15m", found=None, error=None, trace=t
    )
