"""/api/v1/runbooks, /api/v1/lint, /api/v1/environments, /api/v1/reference."""

from __future__ import annotations

from datetime import date
from functools import cache
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import TypeAdapter
from starlette.responses import Response

from opsbook.api import catalogue, schemas
from opsbook.api.deps import Caller, Ctx
from opsbook.errors import ValidationError
from opsbook.lifecycle.opens import record_open
from opsbook.users.access import require

router = APIRouter(tags=["runbooks"])
Name = Annotated[str, Query(max_length=200)]


@router.get("/runbooks", operation_id="listRunbooks", response_model=list[schemas.RunbookSummary])
async def list_runbooks(
    ctx: Ctx,
    caller: Caller,
    q: Annotated[str | None, Query(max_length=200, description="Words to search for")] = None,
    tag: Annotated[str | None, Query(max_length=100)] = None,
) -> Response:
    require(db=ctx.db, principal=caller, permission="runbooks:read", subject="runbooks")

    def render() -> bytes:
        found = catalogue.search_runbooks(ctx=ctx, principal=caller, q=q, tag=tag)
        adapter = _summaries_adapter()
        return adapter.dump_json(adapter.validate_python(found))

    # The same for every reader until a runbook file changes: kept with the catalogue.
    body = ctx.loaded().answer(("runbooks", q, tag), render)
    return Response(body, media_type="application/json")


@cache
def _summaries_adapter() -> TypeAdapter[list[schemas.RunbookSummary]]:
    return TypeAdapter(list[schemas.RunbookSummary])


@router.get(
    "/runbooks/{runbook_id}", operation_id="getRunbook", response_model=schemas.RunbookDetail
)
async def show_runbook(ctx: Ctx, caller: Caller, runbook_id: str) -> dict[str, Any]:
    require(
        db=ctx.db, principal=caller, permission="runbooks:read", subject=f"runbook:{runbook_id}"
    )
    rb = ctx.catalogue().get(runbook_id)
    record_open(db=ctx.db, runbook_id=rb.id, procedure_id=None, person=caller.username, via="api")
    return {
        **catalogue.runbook_summary(rb),
        "content_hash": rb.content_hash,
        "markdown": rb.source,
        "procedure_details": [catalogue.procedure_detail(rb, p) for p in rb.procedures],
    }


@router.get(
    "/runbooks/{runbook_id}/procedures/{procedure_id}",
    operation_id="getProcedure",
    response_model=dict[str, Any],
)
async def show_procedure(
    ctx: Ctx, caller: Caller, runbook_id: str, procedure_id: str
) -> dict[str, Any]:
    require(
        db=ctx.db, principal=caller, permission="runbooks:read", subject=f"runbook:{runbook_id}"
    )
    rb, p = ctx.catalogue().resolve(f"{runbook_id}#{procedure_id}")
    record_open(db=ctx.db, runbook_id=rb.id, procedure_id=p.id, person=caller.username, via="api")
    return catalogue.procedure_detail(rb, p)


@router.get(
    "/lint", operation_id="lintRunbooks", response_model=list[schemas.Finding], tags=["runbooks"]
)
async def lint(
    ctx: Ctx,
    caller: Caller,
    runbook: Annotated[str | None, Query(max_length=200, description="One runbook id")] = None,
    today: Annotated[str | None, Query(max_length=10, description="YYYY-MM-DD")] = None,
) -> list[dict[str, Any]]:
    """Lint the workspace's runbooks (format v1 and the documentation standards)."""
    from opsbook.runbooks.lint import lint_paths  # noqa: PLC0415

    require(db=ctx.db, principal=caller, permission="runbooks:read", subject="lint")
    try:
        day = date.fromisoformat(today) if today else date.today()
    except ValueError as exc:
        raise ValidationError("today is not a date", field="today", hint="YYYY-MM-DD") from exc
    target = ctx.workspace.runbooks_dir
    paths = [ctx.catalogue().get(runbook).path] if runbook else [target]
    if not target.is_dir():
        return []
    return [
        {
            "path": str(f.path.relative_to(ctx.workspace.root))
            if f.path.is_relative_to(ctx.workspace.root)
            else f.path.name,
            "line": f.line,
            "col": f.col,
            "code": f.code,
            "message": f.message,
            "severity": f.severity,
        }
        for f in lint_paths(paths, today=day)
    ]


@router.get(
    "/environments", operation_id="listEnvironments", response_model=list[str], tags=["reference"]
)
async def environments(ctx: Ctx, caller: Caller) -> list[str]:
    require(db=ctx.db, principal=caller, permission="runbooks:read", subject="environments")
    return ctx.workspace.environment_names()


@router.get(
    "/reference",
    operation_id="getQuickReference",
    response_model=dict[str, Any],
    tags=["reference"],
)
async def reference(
    ctx: Ctx,
    caller: Caller,
    environment: Annotated[str | None, Query(max_length=100)] = None,
) -> dict[str, Any]:
    """Quick reference card: contacts and escalation, critical system information, commands."""
    return catalogue.quick_reference(
        ctx=ctx, principal=caller, environment=environment or ctx.workspace.default_environment
    )
