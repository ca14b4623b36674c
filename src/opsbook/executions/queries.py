"""Read models shared by the REST API and the console: paged executions, an execution with its
steps and what it waits for, the audit log, the dashboard, runbook summaries, quick reference.

Each takes the caller and checks the read permission (audited 403) before reading.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

from opsbook.engine import _journal as journal
from opsbook.engine import approvals
from opsbook.engine._base import owner_alive
from opsbook.engine.states import State
from opsbook.errors import OpsbookError, ValidationError
from opsbook.executions.context import AppContext
from opsbook.executions.operations import approval_context, may_approve
from opsbook.runbooks.model import Procedure
from opsbook.users.access import Principal, require

MAX_LIMIT = 200
STATES = tuple(str(s) for s in State)


@dataclass(frozen=True)
class Page:
    items: list[dict[str, Any]]
    next_cursor: str | None


def _check_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_LIMIT:
        raise ValidationError(
            f"limit must be between 1 and {MAX_LIMIT}", field="limit", hint="e.g. limit=50"
        )
    return limit


def _encode(*parts: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(parts).encode()).decode().rstrip("=")


def _decode(cursor: str, n: int) -> list[Any]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        parts = json.loads(raw)
        if not isinstance(parts, list) or len(parts) != n:
            raise ValueError(cursor)
        return parts
    except (ValueError, TypeError) as exc:
        raise ValidationError(
            "the cursor is not one this server issued",
            field="cursor",
            hint="use next_cursor from the previous page, or leave it out for the first page",
        ) from exc


def require_read(*, ctx: AppContext, principal: Principal) -> None:
    """PermissionDenied (audited) unless ``principal`` may read executions."""
    require(db=ctx.db, principal=principal, permission="executions:read", subject="executions")


def list_executions(
    *,
    ctx: AppContext,
    principal: Principal,
    state: str | None = None,
    runbook: str | None = None,
    procedure: str | None = None,
    environment: str | None = None,
    started_by: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> Page:
    """Newest first, keyset-paged on (created_at, id)."""
    require_read(ctx=ctx, principal=principal)
    _check_limit(limit)
    if state is not None and state not in STATES:
        raise ValidationError(
            f"unknown state {state[:20]!r}", field="state", hint=f"states: {', '.join(STATES)}"
        )
    clauses: list[str] = []
    params: list[Any] = []
    for column, value in (
        ("state", state),
        ("runbook_id", runbook),
        ("procedure_id", procedure),
        ("environment", environment),
        ("started_by", started_by),
    ):
        if value is not None:
            clauses.append(f"{column} = ?")
            params.append(value)
    if cursor:
        created, eid = _decode(cursor, 2)
        clauses.append("(created_at < ? OR (created_at = ? AND id < ?))")
        params.extend([str(created), str(created), str(eid)])
    where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
    rows = ctx.db.query(
        "SELECT id, parent_id, runbook_id AS runbook, procedure_id AS procedure,"  # noqa: S608 - fixed clauses, bound values
        " runbook_id || '#' || procedure_id AS ref, environment, params, state, state_name,"
        " reason, dry_run, started_by, created_at, updated_at, finished_at, queue"
        " FROM executions" + where + " ORDER BY created_at DESC, id DESC LIMIT ?",
        (*params, limit + 1),
    )
    more = len(rows) > limit
    rows = rows[:limit]
    # Rows as stored, columns named as the API names them: ``params`` is its JSON text and
    # ``dry_run`` 0/1; ``schemas.StoredExecutionPage`` parses both while serialising.
    items = rows
    nxt = _encode(rows[-1]["created_at"], rows[-1]["id"]) if more and rows else None
    return Page(items, nxt)


def _find_procedure(ctx: AppContext, row: journal.ExecutionRow) -> Procedure | None:
    try:
        rb = ctx.catalogue().get(row.runbook_id)
    except OpsbookError:
        return None
    return rb.procedure(row.procedure_id)


def execution_detail(*, ctx: AppContext, principal: Principal, execution_id: str) -> dict[str, Any]:
    """The execution, every step of its procedure with the latest run of each, what it waits
    for, and which actions this person may take."""
    row = journal.get_execution(db=ctx.db, execution_id=execution_id)
    require(
        db=ctx.db, principal=principal, permission="executions:read", subject=f"execution:{row.id}"
    )
    runs = journal.step_runs(db=ctx.db, execution_id=row.id)
    procedure = _find_procedure(ctx, row)
    latest = {r.step_id: r for r in runs}
    steps: list[dict[str, Any]] = []
    if procedure is not None:
        for s in procedure.steps:
            run = latest.get(s.id)
            steps.append(
                {
                    "id": s.id,
                    "title": s.title,
                    "kind": str(s.kind),
                    "line": s.line,
                    "state": str(run.state) if run else "pending",
                    "state_name": run.state_name if run else "Pending",
                    "duration": run.duration if run else None,
                    "attempts": run.attempts if run else 0,
                    "started_at": run.started_at if run else None,
                    "finished_at": run.finished_at if run else None,
                    "reason": run.reason if run else None,
                    "result": run.result if run else None,
                }
            )
    waiting = _waiting(ctx, principal, row, runs)
    children = ctx.db.query(
        "SELECT id, runbook_id, procedure_id, state FROM executions WHERE parent_id = ?"
        " ORDER BY created_at",
        (row.id,),
    )
    open_state = row.state not in (State.SUCCEEDED, State.FAILED, State.ABORTED)
    return {
        **row.to_dict(),
        "title": procedure.title if procedure else row.procedure_id,
        "steps": steps,
        "runs": [r.to_dict() for r in runs],
        "waiting": waiting,
        "children": [
            {"id": c["id"], "ref": f"{c['runbook_id']}#{c['procedure_id']}", "state": c["state"]}
            for c in children
        ],
        "can": {
            "abort": open_state and principal.can("executions:abort"),
            "resume": (
                row.state in (State.CRASHED, State.WAITING)
                or (row.state is State.RUNNING and not owner_alive(row.owner, db=ctx.db))
                # a queued run no worker took (its message lost, or refused): dispatch again
                or (row.state is State.PENDING and row.queue is not None)
            )
            and row.id not in ctx.tasks
            and principal.can("executions:run"),
            "attest": bool(waiting and waiting["kind"] == "manual")
            and principal.can("executions:run"),
            "approve": bool(waiting and waiting.get("may_approve")),
        },
    }


def _waiting(
    ctx: AppContext, principal: Principal, row: journal.ExecutionRow, runs: list[Any]
) -> dict[str, Any] | None:
    if row.state is not State.WAITING or not runs or runs[-1].state is not State.WAITING:
        return None
    run = runs[-1]
    try:
        step, spec, digest = approval_context(ctx, row, run)
    except OpsbookError as exc:
        return {"kind": run.kind, "step": run.step_id, "seq": run.seq, "problem": exc.message}
    out: dict[str, Any] = {
        "kind": run.kind,
        "step": step.id,
        "title": step.title,
        "seq": run.seq,
        "since": run.started_at,
        "instruction": step.instruction,
    }
    if run.kind == "manual":
        out["checklist"] = [{"index": i, "text": c.text} for i, c in enumerate(step.checklist)]
    elif run.kind == "approval":
        status = approvals.status(
            db=ctx.db,
            execution_id=row.id,
            step_seq=run.seq,
            spec=spec,
            digest=digest,
            requested_at=run.started_at,
        )
        out.update(
            {
                "quorum": spec.quorum,
                "roles": list(spec.roles),
                "expires": spec.expires,
                "status": status.to_dict(),
                "may_approve": may_approve(ctx, principal, row, spec),
                "is_starter": principal.username == row.started_by,
            }
        )
    else:
        out["recovery"] = row.state_name == "AwaitingRecoveryDecision"
    return out


def needs_my_action(
    *, ctx: AppContext, principal: Principal, limit: int = 50
) -> list[dict[str, Any]]:
    """Waiting executions this person can move on: approvals they may give (never their own
    runs) and manual steps (for people who may run procedures)."""
    if not principal.can("executions:read"):
        return []
    rows = ctx.db.query(
        "SELECT e.id, e.runbook_id, e.procedure_id, e.environment, e.started_by, e.state_name,"
        " e.created_at, s.kind, s.step_id, s.seq, s.started_at AS since FROM executions e"
        " JOIN step_runs s ON s.execution_id = e.id AND s.state = 'waiting'"
        " WHERE e.state = 'waiting' ORDER BY s.started_at LIMIT ?",
        (limit,),
    )
    out = []
    roles = set(ctx.roles_of()(principal.username))
    for r in rows:
        if r["kind"] == "approval":
            if not principal.can("executions:approve") or r["started_by"] == principal.username:
                continue
            procedure = _find_procedure(ctx, journal.get_execution(db=ctx.db, execution_id=r["id"]))
            step = procedure.step(r["step_id"]) if procedure else None
            needed = set(step.approval.roles) if step and step.approval else set()
            if needed and not needed & roles:
                continue
            what = "approve"
        elif r["kind"] == "manual":
            if not principal.can("executions:run"):
                continue
            what = "attest"
        else:
            continue
        out.append(
            {
                "id": r["id"],
                "ref": f"{r['runbook_id']}#{r['procedure_id']}",
                "environment": r["environment"],
                "started_by": r["started_by"],
                "step": r["step_id"],
                "action": what,
                "since": r["since"],
            }
        )
    return out


def audit_log(
    *,
    ctx: AppContext,
    principal: Principal,
    actor: str | None = None,
    action: str | None = None,
    execution_id: str | None = None,
    since: str | None = None,
    until: str | None = None,
    limit: int = 100,
    before_id: int | None = None,
) -> Page:
    """Newest first; ``action`` matches a prefix (``auth.`` finds every sign-in event)."""
    require(db=ctx.db, principal=principal, permission="audit:read", subject="audit")
    _check_limit(limit)
    clauses: list[str] = []
    params: list[Any] = []
    if actor:
        clauses.append("actor = ?")
        params.append(actor)
    if action:
        clauses.append("action LIKE ?")
        params.append(action.replace("%", "").replace("_", "\\_") + "%")
    if execution_id:
        clauses.append("execution_id = ?")
        params.append(execution_id)
    if since:
        clauses.append("ts >= ?")
        params.append(since)
    if until:
        clauses.append("ts < ?")
        params.append(until)
    if before_id is not None:
        clauses.append("id < ?")
        params.append(before_id)
    where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
    if action:
        where = where.replace("action LIKE ?", "action LIKE ? ESCAPE '\\'")
    rows = ctx.db.query(
        "SELECT id, ts, actor, action, subject, execution_id, payload, hash FROM events"  # noqa: S608 - fixed clauses, bound values
        + where
        + " ORDER BY id DESC LIMIT ?",
        (*params, limit + 1),
    )
    more = len(rows) > limit
    rows = rows[:limit]
    for r in rows:
        r["payload"] = json.loads(r["payload"])
    return Page(rows, str(rows[-1]["id"]) if more and rows else None)


def evidence_zip(
    *, ctx: AppContext, principal: Principal, since: str | None, until: str | None
) -> bytes:
    """An evidence pack as a zip (events.jsonl, SUMMARY.md, verify_chain.py, manifest); the
    export itself is audited."""
    import io  # noqa: PLC0415
    import tempfile  # noqa: PLC0415
    import zipfile  # noqa: PLC0415
    from pathlib import Path  # noqa: PLC0415

    from opsbook import audit  # noqa: PLC0415
    from opsbook.audit._export import export  # noqa: PLC0415
    from opsbook.audit._signer import server_witness, sign_now  # noqa: PLC0415

    require(db=ctx.db, principal=principal, permission="audit:export", subject="audit")
    buf = io.BytesIO()
    with tempfile.TemporaryDirectory(prefix="opsbook-export-") as tmp:
        witness = server_witness(ctx)
        sign_now(db=ctx.db, cfg=witness, signer="serve")  # vouch for this server's records
        res = export(
            db=ctx.db, out_dir=Path(tmp) / "pack", since=since, until=until, witness=witness
        )
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            for name in res.files:
                zf.write(res.out_dir / name, f"evidence/{name}")
    audit.record(
        db=ctx.db,
        actor=principal.username,
        action="audit.exported",
        subject="audit",
        payload={"since": since, "until": until, "records": res.records, "chain_ok": res.chain_ok},
    )
    return buf.getvalue()


def parse_when(value: str | None, name: str) -> str | None:
    """A date (YYYY-MM-DD) or ISO 8601 time from a query string, as UTC ISO 8601."""
    from datetime import date, datetime  # noqa: PLC0415

    if value is None or value.strip() == "":
        return None
    value = value.strip()
    try:
        if len(value) == 10:
            return date.fromisoformat(value).isoformat() + "T00:00:00Z"
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValidationError(
            f"{name} is not a date or time", field=name, hint="YYYY-MM-DD or ISO 8601 (UTC)"
        ) from exc
    return parsed.isoformat().replace("+00:00", "Z")
