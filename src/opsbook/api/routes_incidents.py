"""/api/v1/incidents: declare, list, show, timeline, acknowledge, update, assign, resolve,
close, suggested procedures, start a procedure for the incident, review draft, report."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import PlainTextResponse, Response

from opsbook.api import pages
from opsbook.api.deps import Caller, Ctx, permission_first
from opsbook.api.schemas import Timestamp
from opsbook.executions.context import AppContext
from opsbook.users.access import Principal, require

router = APIRouter(prefix="/incidents", tags=["incidents"])

IncidentRef = Annotated[
    str, Path(pattern=r"^(INC-|inc-)?[0-9]{1,12}$", description="Incident reference, e.g. INC-12")
]

# The values opsbook.incidents.model accepts (STATUSES, TYPES, SEVERITIES, ...), typed for
# the OpenAPI document; tests/api/test_openapi.py holds the two together.
Status = Literal["investigating", "identified", "monitoring", "resolved", "closed"]
Severity = Literal["SEV1", "SEV2", "SEV3", "SEV4"]
IncidentType = Literal["outage", "security", "performance", "data", "other"]


class IncidentOut(BaseModel):
    """An incident as the API answers it (opsbook.incidents.model.Incident.to_dict)."""

    model_config = ConfigDict(extra="allow")
    ref: str
    id: int
    title: str
    type: str
    services: list[str]
    impact: str | None
    urgency: str | None
    severity: Severity
    status: Status
    summary: str
    drill: bool
    source: str
    alert_key: str | None
    roles: dict[str, Any]
    created_by: str
    impact_start_at: Timestamp | None
    detected_at: Timestamp
    declared_at: Timestamp
    acknowledged_at: Timestamp | None
    acknowledged_by: str | None
    mitigated_at: Timestamp | None
    resolved_at: Timestamp | None
    closed_at: Timestamp | None
    updated_at: Timestamp
    escalation_level: int
    pending_severity: Severity | None
    pending_by: str | None
    time_to_acknowledge_s: float | None
    time_to_resolve_s: float | None


class IncidentDeclared(IncidentOut):
    reasons: list[str] = Field(description="Why this severity (the policy's rules that matched)")
    queued: list[int] = Field(description="Notifications queued (the team paged)")


class MarkdownResponse(PlainTextResponse):
    """A Markdown document (documented as ``text/markdown`` in the OpenAPI document)."""

    media_type = "text/markdown"


class Declare(BaseModel):
    title: str = Field(min_length=1, max_length=300)
    type: IncidentType = "outage"
    services: list[Annotated[str, Field(max_length=100)]] = Field(default=[], max_length=20)
    impact: Literal["extensive", "significant", "moderate", "minor"] | None = None
    urgency: Literal["critical", "high", "medium", "low"] | None = None
    severity: Severity | None = None
    summary: str = Field(default="", max_length=4000)
    commander: str | None = Field(default=None, max_length=64)
    impact_start: str | None = Field(default=None, max_length=40)
    detected: str | None = Field(default=None, max_length=40)
    drill: bool = False


class Update(BaseModel):
    status: Status | None = None
    severity: Severity | None = None
    reason: str = Field(default="", max_length=2000)
    note: str | None = Field(default=None, max_length=8000)
    evidence: str | None = Field(default=None, max_length=20000)
    downgrade: Literal["approve", "reject"] | None = None
    internal: str | None = Field(default=None, max_length=4000, description="internal update")
    public: str | None = Field(
        default=None, max_length=4000, description="customer-facing update (commander publishes)"
    )
    publish: int | None = Field(default=None, ge=1, description="publish this update (commander)")


class Assign(BaseModel):
    role: Literal["commander", "comms_lead", "scribe", "sme"]
    person: str = Field(min_length=1, max_length=64)


class Note(BaseModel):
    note: str = Field(default="", max_length=4000)


class StartRun(BaseModel):
    ref: str = Field(min_length=3, max_length=200, description="RUNBOOK#PROCEDURE")
    environment: str | None = Field(default=None, max_length=100)
    params: dict[str, Any] = Field(default={})
    dry_run: bool = False
    confirm: bool = False


def _may(ctx: AppContext, caller: Principal, permission: str, subject: str) -> None:
    require(db=ctx.db, principal=caller, permission=permission, subject=subject)


def _kick(ctx: AppContext, ids: tuple[int, ...]) -> None:
    """Send queued pages now (the background loop, or a task here)."""
    from opsbook.incidents.background import deliver_soon  # noqa: PLC0415

    deliver_soon(ctx, ids)


@router.post(
    "",
    operation_id="declareIncident",
    response_model=IncidentDeclared,
    status_code=201,
    summary="Declare an incident (classified, team paged)",
)
@permission_first("incidents:manage", "incidents")
async def declare(ctx: Ctx, caller: Caller, body: Declare, response: Response) -> dict[str, Any]:
    from opsbook.incidents.config import load_config  # noqa: PLC0415
    from opsbook.incidents.service import declare as declare_incident  # noqa: PLC0415

    _may(ctx, caller, "incidents:manage", "incidents")
    out = declare_incident(
        db=ctx.db,
        config=load_config(ctx.workspace),
        title=body.title,
        actor=caller.username,
        type_=body.type,
        services=body.services,
        impact=body.impact,
        urgency=body.urgency,
        severity=body.severity,
        summary=body.summary,
        commander=body.commander,
        impact_start=body.impact_start,
        detected=body.detected,
        drill=body.drill,
        source="api",
    )
    _kick(ctx, out.notifications)
    response.headers["Location"] = f"/api/v1/incidents/{out.incident.ref}"
    return {
        **out.incident.to_dict(),
        "reasons": list(out.reasons),
        "queued": list(out.notifications),
    }


class IncidentPage(BaseModel):
    items: list[IncidentOut]
    next_cursor: str | None = Field(description="Pass as cursor for the next page; null at the end")


@router.get(
    "",
    operation_id="listIncidents",
    response_model=IncidentPage,
    summary="List incidents, newest first (a page: limit and cursor)",
)
async def list_incidents(
    ctx: Ctx,
    caller: Caller,
    status: Status | None = None,
    open_only: Annotated[bool, Query(alias="open")] = False,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: pages.Cursor = None,
) -> dict[str, Any]:
    from opsbook.incidents.service import list_incidents as find  # noqa: PLC0415

    _may(ctx, caller, "incidents:read", "incidents")
    before = pages.decode(cursor, int)[0] if cursor else None
    found = find(db=ctx.db, status=status, open_only=open_only, limit=limit + 1, before_id=before)
    out = pages.page(found, limit, lambda i: pages.encode(i.id))
    return {**out, "items": [i.to_dict() for i in out["items"]]}


@router.get(
    "/report",
    operation_id="getIncidentReport",
    summary="MTTA/MTTR/time to detect by severity (drills excluded)",
)
async def report(
    ctx: Ctx,
    caller: Caller,
    since: Annotated[str, Query(max_length=40)],
    until: Annotated[str | None, Query(max_length=40)] = None,
) -> dict[str, Any]:
    from opsbook.incidents.metrics import report as make_report  # noqa: PLC0415
    from opsbook.incidents.model import normalise_ts  # noqa: PLC0415

    _may(ctx, caller, "incidents:read", "incidents")
    return make_report(
        db=ctx.db,
        since=normalise_ts(since, "since"),
        until=normalise_ts(until, "until") if until else None,
    )


@router.get(
    "/{ref}", operation_id="getIncident", response_model=IncidentOut, summary="One incident"
)
async def show(ctx: Ctx, caller: Caller, ref: IncidentRef) -> dict[str, Any]:
    from opsbook.incidents.service import get  # noqa: PLC0415

    _may(ctx, caller, "incidents:read", ref)
    return get(db=ctx.db, ref=ref).to_dict()


@router.get(
    "/{ref}/timeline",
    operation_id="getIncidentTimeline",
    summary="Every event, oldest first (with executions' steps)",
)
async def timeline(ctx: Ctx, caller: Caller, ref: IncidentRef) -> list[dict[str, Any]]:
    from opsbook.incidents.service import get  # noqa: PLC0415
    from opsbook.incidents.service import timeline as events  # noqa: PLC0415

    _may(ctx, caller, "incidents:read", ref)
    return [e.to_dict() for e in events(db=ctx.db, incident=get(db=ctx.db, ref=ref))]


@router.post(
    "/{ref}/ack",
    operation_id="acknowledgeIncident",
    response_model=IncidentOut,
    summary="Acknowledge (stops escalation)",
)
async def ack(ctx: Ctx, caller: Caller, ref: IncidentRef) -> dict[str, Any]:
    from opsbook.incidents.lifecycle import acknowledge  # noqa: PLC0415

    _may(ctx, caller, "incidents:manage", ref)
    return acknowledge(db=ctx.db, ref=ref, actor=caller.username, via="api").to_dict()


@router.post(
    "/{ref}/update",
    operation_id="updateIncident",
    response_model=IncidentOut,
    summary="Status, severity (four-eyes downgrade), notes, evidence",
)
@permission_first("incidents:manage", "{ref}")
async def update(ctx: Ctx, caller: Caller, ref: IncidentRef, body: Update) -> dict[str, Any]:
    from opsbook.errors import ValidationError  # noqa: PLC0415
    from opsbook.incidents import lifecycle  # noqa: PLC0415
    from opsbook.incidents.service import get  # noqa: PLC0415

    _may(ctx, caller, "incidents:manage", ref)
    fields = (body.status, body.severity, body.note, body.evidence, body.downgrade)
    if not any((*fields, body.internal, body.public)) and body.publish is None:
        raise ValidationError(
            "nothing to update",
            field="body",
            hint="send status, severity, note, evidence or downgrade",
        )
    who = caller.username
    if body.note:
        lifecycle.add_note(db=ctx.db, ref=ref, actor=who, text=body.note)
    if body.evidence:
        lifecycle.add_note(db=ctx.db, ref=ref, actor=who, text=body.evidence, kind="evidence")
    if body.internal or body.public or body.publish is not None:
        from opsbook.incidents import comms  # noqa: PLC0415
        from opsbook.incidents.config import load_config  # noqa: PLC0415

        config = load_config(ctx.workspace)
        if body.internal:
            up = comms.post_update(db=ctx.db, config=config, ref=ref, actor=who, text=body.internal)
            _kick(ctx, tuple(up["notifications"]))  # to the people paged so far
        if body.public:
            comms.post_update(
                db=ctx.db, config=config, ref=ref, actor=who, text=body.public, audience="public"
            )
        if body.publish is not None:
            out = comms.approve_update(db=ctx.db, config=config, update_id=body.publish, actor=who)
            _kick(ctx, tuple(out["notifications"]))  # emailed to status page subscribers
    if body.downgrade or body.severity:
        from opsbook.incidents.config import load_config  # noqa: PLC0415

        contacts = load_config(ctx.workspace).contacts  # the resolve target follows
        if body.downgrade:
            lifecycle.decide_downgrade(
                db=ctx.db,
                ref=ref,
                actor=who,
                approve=body.downgrade == "approve",
                comment=body.reason,
                contacts=contacts,
            )
        if body.severity:
            lifecycle.change_severity(
                db=ctx.db,
                ref=ref,
                actor=who,
                severity=body.severity,
                reason=body.reason,
                contacts=contacts,
            )
    if body.status:
        lifecycle.set_status(
            db=ctx.db, ref=ref, actor=who, status=body.status, note=body.note or ""
        )
    return get(db=ctx.db, ref=ref).to_dict()


@router.post(
    "/{ref}/assign",
    operation_id="assignIncidentRole",
    response_model=IncidentOut,
    summary="Assign a role (commander, comms_lead, scribe, sme)",
)
@permission_first("incidents:manage", "{ref}")
async def assign(ctx: Ctx, caller: Caller, ref: IncidentRef, body: Assign) -> dict[str, Any]:
    from opsbook.incidents.lifecycle import assign as assign_role  # noqa: PLC0415

    _may(ctx, caller, "incidents:manage", ref)
    return assign_role(
        db=ctx.db, ref=ref, actor=caller.username, role=body.role, person=body.person
    ).to_dict()


@router.post(
    "/{ref}/resolve", operation_id="resolveIncident", response_model=IncidentOut, summary="Resolve"
)
@permission_first("incidents:manage", "{ref}")
async def resolve(ctx: Ctx, caller: Caller, ref: IncidentRef, body: Note) -> dict[str, Any]:
    from opsbook.incidents.lifecycle import resolve as resolve_incident  # noqa: PLC0415

    _may(ctx, caller, "incidents:manage", ref)
    return resolve_incident(db=ctx.db, ref=ref, actor=caller.username, note=body.note).to_dict()


@router.post(
    "/{ref}/close",
    operation_id="closeIncident",
    response_model=IncidentOut,
    summary="Close a resolved incident",
)
@permission_first("incidents:manage", "{ref}")
async def close(ctx: Ctx, caller: Caller, ref: IncidentRef, body: Note) -> dict[str, Any]:
    from opsbook.incidents.lifecycle import close as close_incident  # noqa: PLC0415

    _may(ctx, caller, "incidents:manage", ref)
    return close_incident(db=ctx.db, ref=ref, actor=caller.username, note=body.note).to_dict()


@router.get(
    "/{ref}/suggestions",
    operation_id="listIncidentSuggestions",
    summary="Runbook procedures that fit the incident",
)
async def suggestions(ctx: Ctx, caller: Caller, ref: IncidentRef) -> list[dict[str, Any]]:
    from opsbook.incidents.service import get  # noqa: PLC0415
    from opsbook.incidents.suggest import suggest_for  # noqa: PLC0415

    _may(ctx, caller, "incidents:read", ref)
    inc = get(db=ctx.db, ref=ref)
    return [s.to_dict() for s in suggest_for(db=ctx.db, catalogue=ctx.catalogue(), incident=inc)]


@router.post(
    "/{ref}/executions",
    operation_id="startIncidentExecution",
    status_code=201,
    summary="Start a procedure for the incident (its steps join the timeline)",
)
@permission_first("incidents:manage", "{ref}")
async def start_run(ctx: Ctx, caller: Caller, ref: IncidentRef, body: StartRun) -> dict[str, Any]:
    from opsbook.errors import ConflictError  # noqa: PLC0415
    from opsbook.executions import operations  # noqa: PLC0415
    from opsbook.incidents.lifecycle import link_execution  # noqa: PLC0415
    from opsbook.incidents.service import get  # noqa: PLC0415

    _may(ctx, caller, "incidents:manage", ref)
    inc = get(db=ctx.db, ref=ref)
    if inc.status == "closed":
        raise ConflictError(f"{inc.ref} is closed", hint="declare a new incident")
    row = await operations.start_execution(
        ctx=ctx,
        principal=caller,
        ref=body.ref,
        environment=body.environment,
        params=body.params,
        dry_run=body.dry_run,
        confirm=body.confirm,
    )
    link_execution(
        db=ctx.db,
        ref=inc.ref,
        actor=caller.username,
        execution_id=row.id,
        procedure=f"{row.runbook_id}#{row.procedure_id}",
    )
    return {"incident": inc.ref, **row.to_dict()}


@router.get(
    "/{ref}/review",
    operation_id="getIncidentReviewDraft",
    response_class=MarkdownResponse,
    responses={200: {"description": "The draft, in Markdown"}},
    summary="Post-incident review draft (Markdown)",
)
async def review(ctx: Ctx, caller: Caller, ref: IncidentRef) -> MarkdownResponse:
    _may(ctx, caller, "incidents:read", ref)
    import asyncio  # noqa: PLC0415

    # an open incident's impact is read from the sandbox now: off the event loop
    text = await asyncio.to_thread(_draft_in_thread, ctx, ref)
    return MarkdownResponse(text)


def _draft_in_thread(ctx: AppContext, ref: str) -> str:
    """A database connection of its own (one connection, one thread)."""
    from opsbook.db import open_database  # noqa: PLC0415
    from opsbook.incidents.review import draft  # noqa: PLC0415

    db = open_database(ctx.db.url)
    try:
        return draft(db=db, ref=ref, workspace=ctx.workspace)
    finally:
        db.close()
