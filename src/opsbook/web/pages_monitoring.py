"""Console pages for monitoring: probes, SLOs and alerts (/monitoring), the SLA report of a
month (/monitoring/sla) and stored morning health check reports."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from opsbook.api.auth import context_of, principal_of
from opsbook.errors import OpsbookError
from opsbook.users.access import require
from opsbook.web.render import render

router = APIRouter(include_in_schema=False)
#: The reports' style rules (monitoring.render.REPORT_CSS): the CSP refuses inline style.
REPORT_CSS = "/static/report.css"
Env = Annotated[str, Query(max_length=100, pattern=r"^$|^[A-Za-z0-9][A-Za-z0-9_.-]*$")]


@router.get("/monitoring", response_class=HTMLResponse)
async def monitoring(request: Request, env: Env = "") -> Response:
    from opsbook.monitoring import alerts, health, store  # noqa: PLC0415
    from opsbook.monitoring.background import prometheus_slos  # noqa: PLC0415
    from opsbook.monitoring.config import load_monitoring  # noqa: PLC0415
    from opsbook.monitoring.service import slo_statuses  # noqa: PLC0415

    ctx = context_of(request)
    who = principal_of(request)
    require(db=ctx.db, principal=who, permission="monitoring:read", subject="monitoring")
    name = env or ctx.workspace.default_environment
    error = None
    slos: list[dict[str, Any]] = []
    try:
        slos = slo_statuses(
            db=ctx.db,
            config=load_monitoring(ctx.workspace, name),
            prometheus=prometheus_slos(ctx),
        )
    except OpsbookError as exc:
        error = exc
    monitor = ctx.cache.get("monitoring.monitor")
    return render(
        request,
        "monitoring.html",
        principal=who,
        environment=name,
        environments=ctx.workspace.environment_names(),
        probes=store.latest(ctx.db, environment=name),
        slos=slos,
        alerts=alerts.list_alerts(ctx.db, status="firing"),
        silences=alerts.list_silences(ctx.db),
        reports=health.list_reports(ctx.db, limit=10),
        month=datetime.now(UTC).strftime("%Y-%m"),
        error=error,
        config_errors=dict(monitor.errors) if monitor is not None else {},
        can_manage=who.can("alerts:manage"),
    )


@router.get("/monitoring/sla", response_class=HTMLResponse)
async def sla_page(
    request: Request,
    month: Annotated[str, Query(pattern=r"^\d{4}-(0[1-9]|1[0-2])$")],
    env: Env = "",
) -> Response:
    """The month's SLA report as a self-contained page (print it to PDF from the browser)."""
    from opsbook.monitoring.config import load_monitoring  # noqa: PLC0415
    from opsbook.monitoring.render import sla_html  # noqa: PLC0415
    from opsbook.monitoring.sla import sla_report  # noqa: PLC0415

    ctx = context_of(request)
    who = principal_of(request)
    require(db=ctx.db, principal=who, permission="monitoring:read", subject="sla")
    config = load_monitoring(ctx.workspace, env or ctx.workspace.default_environment)
    report = sla_report(ctx.db, config=config, month=month)
    return HTMLResponse(sla_html(report, stylesheet=REPORT_CSS))


@router.get("/monitoring/health/{execution_id}", response_class=HTMLResponse)
async def health_page(request: Request, execution_id: str) -> Response:
    from opsbook.monitoring.health import get_report  # noqa: PLC0415
    from opsbook.monitoring.render import linked  # noqa: PLC0415

    ctx = context_of(request)
    who = principal_of(request)
    require(db=ctx.db, principal=who, permission="monitoring:read", subject="health-reports")
    stored = str(get_report(ctx.db, execution_id=execution_id[:32])["html"])
    return HTMLResponse(linked(stored, REPORT_CSS))
