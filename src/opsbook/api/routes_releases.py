"""/api/v1/releases (issue 11, read-only): the releases, newest first, and a release's change
record (opsbook.deploy.records). Deployments themselves go through a run of runbook 03 (POST
/api/v1/executions) or `opsbook deploy`, each audited."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from opsbook.api import pages
from opsbook.api.deps import Caller, Ctx
from opsbook.api.schemas import Timestamp
from opsbook.errors import ValidationError
from opsbook.users.access import require

router = APIRouter(prefix="/releases", tags=["releases"])

READ = "runbooks:read"
MAX_SKIP = 1_000_000

ReleaseId = Annotated[
    str, Path(pattern=r"^rel-[A-Za-z0-9-]{1,64}$", description="A release's id, rel-…")
]
Name = Annotated[str | None, Query(max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]
# opsbook.deploy.records.OPEN_STATES + DONE_STATES; tests/api/test_releases_api.py holds them
# together.
ReleaseState = Literal[
    "requested",
    "running",
    "promoted",
    "aborted",
    "rolled_back",
    "failed",
    "refused",
    "cancelled",
]
Tier = Literal["production", "staging"]


class ReleaseOut(BaseModel):
    """A release as recorded (opsbook.deploy.records): what changed, how, how it ended."""

    model_config = ConfigDict(extra="allow")
    id: str
    environment: str
    tier: Tier
    production: bool
    service: str
    version: str
    previous_version: str | None
    strategy: str
    ticket: str
    reason: str
    security_impact: str
    backout: str
    emergency: bool
    state: ReleaseState
    detail: str | None
    requested_by: str
    requested_at: Timestamp
    finished_at: Timestamp | None
    execution_id: str | None
    evidence: dict[str, Any] | None = Field(description="The testing evidence found at the start")
    freeze: list[dict[str, Any]] | None = Field(description="The freeze windows it met")
    rollout: dict[str, Any] | None = Field(description="The rollout's outcome and decisions")
    lead_started_at: Timestamp | None
    rolled_back_at: Timestamp | None
    restored_at: Timestamp | None
    rollback_execution_id: str | None
    incident_ids: list[str]


class ReleasePage(BaseModel):
    items: list[ReleaseOut]
    next_cursor: str | None = Field(description="Pass as cursor for the next page; null at the end")


class RecordApproval(BaseModel):
    execution_id: str
    approver: str
    decision: str
    comment: str | None
    created_at: Timestamp


class RecordExecution(BaseModel):
    id: str
    runbook_id: str
    procedure_id: str
    environment: str
    state: str
    started_by: str
    created_at: Timestamp
    finished_at: Timestamp | None


class ChangeRecord(BaseModel):
    """A release's change record as an auditor reads it (PCI DSS 4.0.1 6.5.1): the ticket,
    reason, security impact, back-out plan, approvals and testing evidence, the outcome, the
    executions and every rollout decision; what ``opsbook releases show --json`` prints."""

    model_config = ConfigDict(extra="allow")
    release: str
    ticket: str
    service: str
    environment: str
    tier: Tier
    change: str = Field(description="SERVICE PREVIOUS -> VERSION")
    strategy: str
    reason: str
    security_impact: str
    backout: str
    emergency: bool
    freeze: list[dict[str, Any]] | None
    requested_by: str
    requested_at: Timestamp
    approvals: list[RecordApproval]
    testing_evidence: dict[str, Any] | None
    outcome: ReleaseState
    outcome_detail: str | None
    finished_at: Timestamp | None
    rolled_back_at: Timestamp | None
    incidents: list[str]
    executions: list[RecordExecution]
    decisions: list[dict[str, Any]]


@router.get(
    "",
    operation_id="listReleases",
    response_model=ReleasePage,
    summary="List releases, newest first (a page: limit and cursor)",
)
async def list_releases(
    ctx: Ctx,
    caller: Caller,
    environment: Name = None,
    service: Name = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: pages.Cursor = None,
) -> dict[str, Any]:
    """The cursor is a position in the list: releases are only ever added at its head (the
    newest) and never removed, so a page may repeat one added meanwhile but never skips one."""
    from opsbook.deploy import records  # noqa: PLC0415

    require(db=ctx.db, principal=caller, permission=READ, subject="releases")
    skip = int(pages.decode(cursor, int)[0]) if cursor else 0
    if not 0 <= skip <= MAX_SKIP:
        raise ValidationError(
            "the cursor is not one this server issued",
            field="cursor",
            hint="use next_cursor from the previous page, or leave it out for the first page",
        )
    found = records.list_releases(
        ctx.db, environment=environment, service=service, limit=skip + limit + 1
    )[skip:]
    return pages.page(found, limit, lambda _: pages.encode(skip + limit))


@router.get(
    "/{release_id}",
    operation_id="getRelease",
    response_model=ChangeRecord,
    summary="A release's change record (ticket, reason, security impact, approvals, testing"
    " evidence, back-out plan, outcome, executions, rollout decisions)",
)
async def get_release(ctx: Ctx, caller: Caller, release_id: ReleaseId) -> dict[str, Any]:
    from opsbook.deploy import records  # noqa: PLC0415

    require(db=ctx.db, principal=caller, permission=READ, subject=f"release:{release_id}")
    return records.change_record(ctx.db, release_id)
