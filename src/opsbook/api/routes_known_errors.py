"""/api/v1/known-errors and /api/v1/known-error-confirmations (issue 12): list, show,
record, and confirm a diagnosis by the execution that ran its fix
(opsbook.troubleshoot.known_errors)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict, Field, Strict

from opsbook.api import pages
from opsbook.api.deps import Caller, Ctx, permission_first
from opsbook.api.schemas import Timestamp
from opsbook.users.access import require

router = APIRouter(prefix="/known-errors", tags=["known-errors"])
#: its own path: under /known-errors it would be taken for a known error's id
confirmations = APIRouter(prefix="/known-error-confirmations", tags=["known-errors"])

READ = "monitoring:read"
MANAGE = "incidents:manage"

KnownErrorId = Annotated[
    str, Path(pattern=r"^ke-[0-9a-f]{1,32}$", description="A known error's id, ke-…")
]
Cause = Literal[
    "crash",
    "hang",
    "latency",
    "error-rate",
    "db-down",
    "db-connections-exhausted",
    "dependency-slow",
    "memory-leak",
    "disk-full",
    "cert-expiring",
    "suspicious-logins",
    "bad-deploy",
]


class KnownErrorOut(BaseModel):
    """A known error: symptoms (matchers), cause, fix, where it came from, how often confirmed."""

    model_config = ConfigDict(extra="allow")
    id: str
    title: str
    cause: str
    service: str | None
    symptoms: list[dict[str, Any]]
    procedure: str
    params: dict[str, Any]
    source: str
    source_ref: str | None
    created_by: str
    created_at: Timestamp
    confirmed: int
    last_confirmed_at: Timestamp | None
    retired_at: Timestamp | None


class KnownErrorPage(BaseModel):
    items: list[KnownErrorOut]
    next_cursor: str | None = Field(description="Pass as cursor for the next page; null at the end")


_FACT = r"^(platform|health|logs|signals|database|payment_network)(\.[A-Za-z0-9_-]+)*$"
_FACT_HELP = "A dotted path into the diagnosis' facts, e.g. logs.fresh.http_500"


class LogMatcher(BaseModel):
    model_config = ConfigDict(extra="forbid")
    log: str = Field(pattern=r"\S", max_length=300, description="Text a log template contains")


class EvidenceMatcher(BaseModel):
    model_config = ConfigDict(extra="forbid")
    evidence: Literal["platform", "health", "logs", "signals", "database", "payment_network"]
    contains: str | None = Field(default=None, min_length=1, max_length=300)


class FactEquals(BaseModel):
    model_config = ConfigDict(extra="forbid")
    fact: str = Field(pattern=_FACT, max_length=200, description=_FACT_HELP)
    equals: str | float | bool


class FactAbove(BaseModel):
    model_config = ConfigDict(extra="forbid")
    fact: str = Field(pattern=_FACT, max_length=200, description=_FACT_HELP)
    above: Annotated[float, Strict()]


class FactBelow(BaseModel):
    model_config = ConfigDict(extra="forbid")
    fact: str = Field(pattern=_FACT, max_length=200, description=_FACT_HELP)
    below: Annotated[float, Strict()]


Matcher = LogMatcher | EvidenceMatcher | FactEquals | FactAbove | FactBelow


class NewKnownError(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: str = Field(pattern=r"\S", max_length=300)
    cause: Cause
    symptoms: list[Matcher] = Field(
        min_length=1,
        max_length=50,
        description='Matchers: {"log": "text"}, {"evidence": "health", "contains": "text"},'
        ' {"fact": "logs.fresh.http_500", "above": 5}; all must match',
    )
    service: str | None = Field(default=None, max_length=64)
    procedure: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9_-]+#[A-Za-z0-9_-]+$",
        max_length=200,
        description="RUNBOOK#PROCEDURE; default: the cause's",
    )
    params: dict[str, str] | None = None


class Confirm(BaseModel):
    model_config = ConfigDict(extra="forbid")
    diagnosis: str = Field(pattern=r"^dg-[0-9a-f]{1,32}$", description="The diagnosis, dg-…")
    execution: str = Field(min_length=1, max_length=64, description="The execution that fixed it")


@router.get(
    "",
    operation_id="listKnownErrors",
    response_model=KnownErrorPage,
    summary="List known errors by id (a page: limit and cursor)",
)
async def list_known_errors(
    ctx: Ctx,
    caller: Caller,
    retired: bool = False,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: pages.Cursor = None,
) -> dict[str, Any]:
    from opsbook.troubleshoot import known_errors  # noqa: PLC0415

    require(db=ctx.db, principal=caller, permission=READ, subject="known_errors")
    after = pages.decode(cursor, str)[0] if cursor else None
    found = known_errors.list_known_errors(
        db=ctx.db, include_retired=retired, limit=limit + 1, after=after
    )
    return pages.page(found, limit, lambda k: pages.encode(str(k["id"])))


@confirmations.post(
    "",
    operation_id="createKnownErrorConfirmation",
    response_model=KnownErrorOut,
    summary="Confirm a diagnosis by the successful execution of its fix (makes or strengthens"
    " the known error; 422 when the execution failed or ran something else)",
)
@permission_first(MANAGE, "known_errors")
async def confirm_known_error(ctx: Ctx, caller: Caller, body: Confirm) -> dict[str, Any]:
    from opsbook.troubleshoot import known_errors  # noqa: PLC0415

    require(db=ctx.db, principal=caller, permission=MANAGE, subject="known_errors")
    with ctx.db.transaction():
        return known_errors.confirm_from_fix(
            db=ctx.db,
            actor=caller.username,
            diagnosis_id=body.diagnosis,
            execution_id=body.execution,
        )


@router.get(
    "/{known_error_id}",
    operation_id="getKnownError",
    response_model=KnownErrorOut,
    summary="One known error",
)
async def get_known_error(ctx: Ctx, caller: Caller, known_error_id: KnownErrorId) -> dict[str, Any]:
    from opsbook.troubleshoot import known_errors  # noqa: PLC0415

    require(db=ctx.db, principal=caller, permission=READ, subject=f"known_error:{known_error_id}")
    return known_errors.get(db=ctx.db, known_error_id=known_error_id)


@router.post(
    "",
    operation_id="createKnownError",
    response_model=KnownErrorOut,
    status_code=201,
    summary="Record a known error (symptoms validated; audited)",
)
@permission_first(MANAGE, "known_errors")
async def create_known_error(ctx: Ctx, caller: Caller, body: NewKnownError) -> dict[str, Any]:
    from opsbook.troubleshoot import known_errors  # noqa: PLC0415

    require(db=ctx.db, principal=caller, permission=MANAGE, subject="known_errors")
    with ctx.db.transaction():
        return known_errors.create(
            db=ctx.db,
            actor=caller.username,
            title=body.title,
            cause=body.cause,
            symptoms=[m.model_dump(exclude_none=True) for m in body.symptoms],
            service=body.service,
            procedure=body.procedure,
            params=dict(body.params) if body.params is not None else None,
        )
