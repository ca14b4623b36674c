"""Console forms that change executions: start, attest, approve/reject, abort, resume.
Each form carries the session's CSRF token; each goes through the same operations as the API."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from opsbook.api.auth import context_of
from opsbook.errors import ValidationError
from opsbook.executions import operations
from opsbook.web.forms import form_principal
from opsbook.web.pages import run_form
from opsbook.web.render import with_flash

router = APIRouter(include_in_schema=False)


def _back(execution_id: str, message: str) -> Response:
    return with_flash(RedirectResponse(f"/executions/{execution_id}", status_code=303), message)


@router.post("/runbooks/{runbook_id}/{procedure_id}/run")
async def start(request: Request, runbook_id: str, procedure_id: str) -> Response:
    ctx = context_of(request)
    who, form = await form_principal(request)
    ref = f"{runbook_id}#{procedure_id}"
    params = {k: v for k, v in form.startswith("param.").items() if v != ""}
    values = dict(form.pairs)
    try:
        row = await operations.start_execution(
            ctx=ctx,
            principal=who,
            ref=ref,
            environment=form.get("environment") or None,
            params=params,
            dry_run=form.get("dry_run") == "1",
            confirm=form.get("confirm") == "1",
        )
    except ValidationError as exc:
        return run_form(request, ref, values=values, error=exc)
    return _back(row.id, f"Started {ref} (execution {row.id}).")


@router.post("/executions/{execution_id}/attest")
async def attest(request: Request, execution_id: str) -> Response:
    ctx = context_of(request)
    who, form = await form_principal(request)
    try:
        items = [int(v) for v in form.getlist("item")]
    except ValueError as exc:
        raise ValidationError("checklist items are numbers", field="items", hint="reload") from exc
    row = await operations.attest_step(
        ctx=ctx, principal=who, execution_id=execution_id, items=items, note=form.get("note")
    )
    return _back(row.id, f"Attested by {who.username}; the run continues.")


@router.post("/executions/{execution_id}/approval")
async def approval(request: Request, execution_id: str) -> Response:
    ctx = context_of(request)
    who, form = await form_principal(request)
    decision = form.get("decision")
    status = await operations.decide_approval(
        ctx=ctx,
        principal=who,
        execution_id=execution_id,
        decision=decision,
        comment=form.get("comment") or None,
    )
    verb = "Approved" if decision == "approve" else "Rejected"
    return _back(execution_id, f"{verb} by {who.username} ({status.verdict}).")


@router.post("/executions/{execution_id}/abort")
async def abort(request: Request, execution_id: str) -> Response:
    ctx = context_of(request)
    who, form = await form_principal(request)
    row = operations.abort_execution(
        ctx=ctx, principal=who, execution_id=execution_id, reason=form.get("reason") or None
    )
    return _back(row.id, f"Abort: {row.state_name}.")


@router.post("/executions/{execution_id}/resume")
async def resume(request: Request, execution_id: str) -> Response:
    ctx = context_of(request)
    who, form = await form_principal(request)
    row = await operations.resume_execution(
        ctx=ctx, principal=who, execution_id=execution_id, decision=form.get("decision") or None
    )
    return _back(row.id, f"Resumed: {row.state_name}.")
