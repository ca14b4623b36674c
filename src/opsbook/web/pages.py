"""Console pages that read: dashboard, runbooks, run form, executions."""

from __future__ import annotations

import time
from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Query
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from opsbook.api import catalogue
from opsbook.api.auth import context_of, principal_of
from opsbook.engine.states import State
from opsbook.errors import OpsbookError
from opsbook.executions import queries
from opsbook.lifecycle.opens import record_open
from opsbook.users.access import require
from opsbook.web.render import environment, render, strip_front_matter

router = APIRouter(include_in_schema=False)
Q = Annotated[str, Query(max_length=200)]
HEALTH_TTL = 30.0


async def _health(request: Request, services: list[Any]) -> dict[str, dict[str, str]]:
    """Each service's health URL, asked at most every 30 s (cached), 0.5 s timeout each."""
    import asyncio  # noqa: PLC0415

    import httpx  # noqa: PLC0415

    ctx = context_of(request)
    cached = ctx.cache.get("health")
    if cached and time.monotonic() - cached[0] < HEALTH_TTL:
        return dict(cached[1])
    urls = {str(s["name"]): str(s["health_url"]) for s in services if s.get("health_url")}

    async def one(client: httpx.AsyncClient, url: str) -> dict[str, str]:
        try:
            r = await client.get(url)
        except httpx.HTTPError as exc:
            return {"state": "down", "label": "down", "detail": type(exc).__name__}
        ok = r.status_code == 200
        return {
            "state": "up" if ok else "down",
            "label": "up" if ok else f"HTTP {r.status_code}",
            "detail": f"{r.elapsed.total_seconds() * 1000:.0f} ms",
        }

    async with httpx.AsyncClient(timeout=0.5) as client:
        results = await asyncio.gather(*(one(client, u) for u in urls.values()))
    found = dict(zip(urls, results, strict=True))
    ctx.cache["health"] = (time.monotonic(), found)
    return found


@router.get("/", response_class=HTMLResponse)
async def dashboard(request: Request) -> Response:
    ctx = context_of(request)
    who = principal_of(request)
    active = [
        *queries.list_executions(ctx=ctx, principal=who, state="running", limit=20).items,
        *queries.list_executions(ctx=ctx, principal=who, state="waiting", limit=20).items,
        *queries.list_executions(ctx=ctx, principal=who, state="crashed", limit=20).items,
    ]
    recent = queries.list_executions(ctx=ctx, principal=who, limit=10).items
    env_name = ctx.workspace.default_environment
    services: list[Any] = []
    try:
        from opsbook.workspace import load_environment  # noqa: PLC0415

        services = [dict(s) for s in load_environment(ctx.workspace, env_name).services]
    except OpsbookError:
        services = []
    health = await _health(request, services) if services else {}
    for s in services:
        s["health"] = health.get(str(s.get("name")))
    return render(
        request,
        "dashboard.html",
        principal=who,
        mine=queries.needs_my_action(ctx=ctx, principal=who),
        active=active,
        recent=recent,
        services=services,
        environment=env_name,
        incidents=_open_incidents(ctx, who),
    )


def _open_incidents(ctx: Any, who: Any) -> list[Any] | None:
    """The open incidents, most severe first (None: the user may not read incidents)."""
    from opsbook.incidents.service import list_incidents  # noqa: PLC0415

    if not who.can("incidents:read"):
        return None
    rows = list_incidents(db=ctx.db, open_only=True, limit=50)
    return sorted(rows, key=lambda i: (i.severity, i.declared_at))


@router.get("/runbooks", response_class=HTMLResponse)
async def runbooks(request: Request, q: Q = "", tag: Q = "") -> Response:
    ctx = context_of(request)
    who = principal_of(request)
    found = catalogue.search_runbooks(ctx=ctx, principal=who, q=q or None, tag=tag or None)
    tags = sorted({t for rb in ctx.catalogue().runbooks for t in rb.meta.tags})
    return render(
        request,
        "runbooks.html",
        principal=who,
        runbooks=found,
        q=q,
        tag=tag,
        tags=tags,
        broken=ctx.loaded().broken,
    )


@router.get("/runbooks/{runbook_id}", response_class=HTMLResponse)
async def runbook(request: Request, runbook_id: str) -> Response:
    from opsbook.runbooks.lint import lint_paths  # noqa: PLC0415

    ctx = context_of(request)
    who = principal_of(request)
    require(db=ctx.db, principal=who, permission="runbooks:read", subject=f"runbook:{runbook_id}")
    rb = ctx.catalogue().get(runbook_id)
    record_open(db=ctx.db, runbook_id=rb.id, procedure_id=None, person=who.username, via="console")
    findings = lint_paths([rb.path], today=date.today())
    return render(
        request,
        "runbook.html",
        principal=who,
        rb=rb,
        body=strip_front_matter(rb.source),
        findings=findings,
        can_run=who.can("executions:run"),
    )


def run_form(
    request: Request,
    ref: str,
    *,
    values: dict[str, Any] | None = None,
    error: OpsbookError | None = None,
) -> Response:
    ctx = context_of(request)
    who = principal_of(request)
    require(db=ctx.db, principal=who, permission="executions:run", subject=f"runbook:{ref}")
    rb, p = ctx.catalogue().resolve(ref)
    envs = ctx.workspace.environment_names()
    if p.environments:
        envs = [e for e in envs if e in p.environments]
    return render(
        request,
        "run.html",
        status=error.http_status if error else 200,
        principal=who,
        rb=rb,
        p=p,
        params=[x for x in p.params if x.type != "secret"],
        environments=envs,
        default_env=ctx.workspace.default_environment,
        values=values or {},
        error=error,
    )


@router.get("/runbooks/{runbook_id}/{procedure_id}/run", response_class=HTMLResponse)
async def run_page(request: Request, runbook_id: str, procedure_id: str) -> Response:
    # a link may fill the form in (?service=payment&environment=sandbox, as the diagnosis
    # page's fix link does); the values are only shown: the POST checks them
    _, proc = context_of(request).catalogue().resolve(f"{runbook_id}#{procedure_id}")
    names = {p.name for p in proc.params if p.type != "secret"}
    values: dict[str, Any] = {}
    for key, value in request.query_params.items():
        name = key.removeprefix("param.")
        if name in names:
            values[f"param.{name}"] = value[:1000]
        elif key == "environment":
            values["environment"] = value[:64]
    page = run_form(request, f"{runbook_id}#{procedure_id}", values=values)
    record_open(
        db=context_of(request).db,
        runbook_id=runbook_id,
        procedure_id=procedure_id,
        person=principal_of(request).username,
        via="console",
    )
    return page


@router.get("/executions", response_class=HTMLResponse)
async def executions(
    request: Request, state: Q = "", started_by: Q = "", cursor: Q = ""
) -> Response:
    ctx = context_of(request)
    who = principal_of(request)
    page = queries.list_executions(
        ctx=ctx,
        principal=who,
        state=state or None,
        started_by=started_by or None,
        cursor=cursor or None,
        limit=50,
    )
    return render(
        request,
        "executions.html",
        principal=who,
        rows=page.items,
        next_cursor=page.next_cursor,
        state=state,
        started_by=started_by,
        states=[str(s) for s in State],
    )


@router.get("/executions/{execution_id}", response_class=HTMLResponse)
async def execution(request: Request, execution_id: str) -> Response:
    ctx = context_of(request)
    who = principal_of(request)
    x = queries.execution_detail(ctx=ctx, principal=who, execution_id=execution_id)
    return render(request, "execution.html", principal=who, x=x)


@router.get("/executions/{execution_id}/fragment", response_class=HTMLResponse)
async def execution_fragment(request: Request, execution_id: str) -> Response:
    """The live part of the execution page, re-fetched when the journal changes."""
    ctx = context_of(request)
    who = principal_of(request)
    x = queries.execution_detail(ctx=ctx, principal=who, execution_id=execution_id)
    from opsbook.api.auth import session_of  # noqa: PLC0415

    session = session_of(request)
    html = (
        environment()
        .get_template("_execution_body.html")
        .render(x=x, principal=who, csrf=session.csrf_token if session else "")
    )
    return HTMLResponse(html, headers={"Cache-Control": "no-store"})
