"""/api/v1/executions: list, start, show, events (JSON and Server-Sent Events), attest,
approve or reject, abort, resume."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from functools import cache
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query
from pydantic import TypeAdapter
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from opsbook.api import schemas
from opsbook.api.auth import context_of, principal_of
from opsbook.api.deps import Caller, Ctx, ExecutionId, permission_first
from opsbook.engine import _journal as journal
from opsbook.engine.states import TERMINAL_STATES, State
from opsbook.errors import ValidationError
from opsbook.executions import operations, queries
from opsbook.users.access import require

router = APIRouter(prefix="/executions", tags=["executions"])
SSE_POLL = 1.0  # seconds: changes made by other processes arrive within this
SSE_OUTPUT_POLL = 0.25  # seconds, while a step runs: its output arrives within this
SSE_HEARTBEAT = 15.0


_TEXT_FILTERS = {
    "state": 20,
    "runbook": 200,
    "procedure": 200,
    "environment": 100,
    "started_by": 64,
    "cursor": 300,
}
_LIST_PARAMS = [
    {
        "name": name,
        "in": "query",
        "required": False,
        "schema": {"type": "string", "maxLength": length},
    }
    for name, length in _TEXT_FILTERS.items()
] + [
    {
        "name": "limit",
        "in": "query",
        "required": False,
        "schema": {"type": "integer", "minimum": 1, "maximum": queries.MAX_LIMIT, "default": 50},
    }
]


def _list_args(request: Request) -> dict[str, Any]:
    """The listing's query parameters, checked here rather than by FastAPI's per-parameter
    machinery (a third of this endpoint's time); documented through ``_LIST_PARAMS``."""
    q = request.query_params
    args: dict[str, Any] = {}
    for name, length in _TEXT_FILTERS.items():
        value = q.get(name)
        if value is not None and len(value) > length:
            raise ValidationError(
                f"{name} is longer than {length} characters", field=name, hint="shorten it"
            )
        args[name] = value
    raw = q.get("limit", "50")
    if not raw.isdigit() or not 1 <= int(raw) <= queries.MAX_LIMIT:
        raise ValidationError(
            f"limit must be a whole number from 1 to {queries.MAX_LIMIT}",
            field="limit",
            hint="e.g. limit=50",
        )
    args["limit"] = int(raw)
    return args


@router.get(
    "",
    operation_id="listExecutions",
    response_model=schemas.ExecutionPage,
    summary="List executions, newest first",
    openapi_extra={"parameters": _LIST_PARAMS},
)
async def list_executions(request: Request) -> Response:
    ctx, principal, args = context_of(request), principal_of(request), _list_args(request)
    # Every caller's access is checked; the page itself is the same for everyone allowed to
    # read it, so it is reused until the database changes (ADR 0008).
    queries.require_read(ctx=ctx, principal=principal)

    def render() -> bytes:
        page = queries.list_executions(ctx=ctx, principal=principal, **args)
        # Stored rows validated and serialised by pydantic in one pass (params parsed from
        # their JSON text there), skipping FastAPI's generic encoder. The answer has the
        # documented response_model's shape; the schemathesis test holds it to it.
        adapter = _page_adapter()
        body = adapter.validate_python({"items": page.items, "next_cursor": page.next_cursor})
        return adapter.dump_json(body)

    key = ("executions.list", *sorted(args.items()))
    return Response(ctx.reads.get(key, render), media_type="application/json")


@cache
def _page_adapter() -> TypeAdapter[schemas.StoredExecutionPage]:
    return TypeAdapter(schemas.StoredExecutionPage)


@router.post(
    "",
    operation_id="startExecution",
    response_model=schemas.Execution,
    status_code=201,
    summary="Start a procedure (returns once the execution exists; it runs on in the server)",
)
@permission_first("executions:run", "executions")
async def start_execution(
    ctx: Ctx, caller: Caller, body: schemas.StartExecution, response: Response
) -> dict[str, Any]:
    row = await operations.start_execution(
        ctx=ctx,
        principal=caller,
        ref=body.ref,
        environment=body.environment,
        params=body.params,
        dry_run=body.dry_run,
        confirm=body.confirm,
    )
    response.headers["Location"] = f"/api/v1/executions/{row.id}"
    return row.to_dict()


@router.get("/{execution_id}", operation_id="getExecution", response_model=schemas.ExecutionDetail)
async def show_execution(ctx: Ctx, caller: Caller, execution_id: ExecutionId) -> dict[str, Any]:
    return queries.execution_detail(ctx=ctx, principal=caller, execution_id=execution_id)


def _running_output(ctx: Ctx, execution_id: str) -> list[dict[str, Any]]:
    """The output kept so far on each running step run of the execution (already redacted
    by the engine): ``{"seq", "step", "text"}`` (the last lines, newest last)."""
    out = []
    for r in ctx.db.query(
        "SELECT seq, step_id, result FROM step_runs WHERE execution_id = ? AND state = ?",
        (execution_id, str(State.RUNNING)),
    ):
        try:
            lines = json.loads(r["result"] or "{}").get("live_output")
        except (ValueError, AttributeError):
            lines = None
        if isinstance(lines, list):
            out.append({"seq": int(r["seq"]), "step": str(r["step_id"]), "text": "\n".join(lines)})
    return out


def _events(ctx: Ctx, execution_id: str, after: int, limit: int = 500) -> list[dict[str, Any]]:
    rows = ctx.db.query(
        "SELECT id, ts, actor, action, subject, payload FROM events"
        " WHERE execution_id = ? AND id > ? ORDER BY id LIMIT ?",
        (execution_id, after, limit),
    )
    for r in rows:
        r["payload"] = json.loads(r["payload"])
    return rows


@router.get(
    "/{execution_id}/events", operation_id="listExecutionEvents", response_model=list[schemas.Event]
)
async def list_events(
    ctx: Ctx,
    caller: Caller,
    execution_id: ExecutionId,
    after: Annotated[int, Query(ge=0, le=2**62)] = 0,
) -> list[dict[str, Any]]:
    row = journal.get_execution(db=ctx.db, execution_id=execution_id)
    require(
        db=ctx.db, principal=caller, permission="executions:read", subject=f"execution:{row.id}"
    )
    return _events(ctx, row.id, after)


@router.get(
    "/{execution_id}/stream",
    operation_id="streamExecutionEvents",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "journal events"}},
    summary="Live journal events (Server-Sent Events; resumes after Last-Event-ID)",
)
async def stream_events(
    request: Request,
    ctx: Ctx,
    caller: Caller,
    execution_id: ExecutionId,
    last_event_id: Annotated[str | None, Header(max_length=20)] = None,
    after: Annotated[int, Query(ge=0, le=2**62)] = 0,
) -> StreamingResponse:
    row = journal.get_execution(db=ctx.db, execution_id=execution_id)
    require(
        db=ctx.db, principal=caller, permission="executions:read", subject=f"execution:{row.id}"
    )
    start = after
    if last_event_id and last_event_id.isdigit():
        start = max(start, int(last_event_id))

    async def gen() -> AsyncIterator[str]:
        last = start
        beat = time.monotonic()
        shown: dict[int, str] = {}  # step run seq -> the output last sent
        yield "retry: 2000\n\n"
        while True:
            rows = _events(ctx, row.id, last)
            for ev in rows:
                last = int(ev["id"])
                data = json.dumps(ev, default=str, ensure_ascii=False)
                yield f"id: {last}\nevent: journal\ndata: {data}\n\n"
            running = False
            for out in _running_output(ctx, row.id):
                running = True
                if shown.get(out["seq"]) != out["text"]:
                    shown[out["seq"]] = out["text"]
                    yield f"event: output\ndata: {json.dumps(out, ensure_ascii=False)}\n\n"
            if not rows:
                current = journal.get_execution(db=ctx.db, execution_id=row.id)
                if current.state in TERMINAL_STATES and row.id not in ctx.tasks:
                    yield f"event: end\ndata: {json.dumps({'state': str(current.state)})}\n\n"
                    return
                if time.monotonic() - beat > SSE_HEARTBEAT:
                    beat = time.monotonic()
                    yield ": keep-alive\n\n"
                if await request.is_disconnected():
                    return
                await ctx.changes.wait(SSE_OUTPUT_POLL if running else SSE_POLL)
            else:
                await asyncio.sleep(0)

    return StreamingResponse(
        gen(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


@router.post(
    "/{execution_id}/attest", operation_id="attestExecutionStep", response_model=schemas.Execution
)
@permission_first("executions:run", "execution:{execution_id}")
async def attest(
    ctx: Ctx, caller: Caller, execution_id: ExecutionId, body: schemas.Attest
) -> dict[str, Any]:
    """Attest the manual step the run waits at (every checklist item) and continue the run."""
    row = await operations.attest_step(
        ctx=ctx, principal=caller, execution_id=execution_id, items=body.items, note=body.note
    )
    return row.to_dict()


@router.post(
    "/{execution_id}/approval",
    operation_id="decideExecutionApproval",
    response_model=schemas.ApprovalStatus,
)
@permission_first("executions:approve", "execution:{execution_id}")
async def decide(
    ctx: Ctx, caller: Caller, execution_id: ExecutionId, body: schemas.Decision
) -> dict[str, Any]:
    """Approve or reject the approval step the run waits at. The person who started the run
    can never approve it (four-eyes, admins included)."""
    status = await operations.decide_approval(
        ctx=ctx,
        principal=caller,
        execution_id=execution_id,
        decision=body.decision,
        comment=body.comment,
    )
    return status.to_dict()


@router.post(
    "/{execution_id}/abort", operation_id="abortExecution", response_model=schemas.Execution
)
@permission_first("executions:abort", "execution:{execution_id}")
async def abort(
    ctx: Ctx, caller: Caller, execution_id: ExecutionId, body: schemas.Abort
) -> dict[str, Any]:
    row = operations.abort_execution(
        ctx=ctx, principal=caller, execution_id=execution_id, reason=body.reason
    )
    return row.to_dict()


@router.post(
    "/{execution_id}/resume", operation_id="resumeExecution", response_model=schemas.Execution
)
@permission_first("executions:run", "execution:{execution_id}")
async def resume(
    ctx: Ctx, caller: Caller, execution_id: ExecutionId, body: schemas.Resume
) -> dict[str, Any]:
    row = await operations.resume_execution(
        ctx=ctx, principal=caller, execution_id=execution_id, decision=body.decision
    )
    return row.to_dict()
