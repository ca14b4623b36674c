"""Request and response bodies of the REST API (pydantic; the OpenAPI spec comes from these)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, Json, WithJsonSchema

from opsbook.engine.states import State
from opsbook.runbooks.model import StepKind

Scalar = str | int | float | bool
#: A UTC timestamp as stored and answered (RFC 3339, e.g. 2026-12-03T07:28:22.805768Z); kept a
#: string so the answer is byte for byte what it always was, typed for the OpenAPI document.
Timestamp = Annotated[str, WithJsonSchema({"type": "string", "format": "date-time"})]
Risk = Literal["low", "medium", "high"]
Via = Literal["session", "token", "cli", "system"]
Scope = Literal["read", "alerts", "run", "approve", "audit", "admin"]  # users.roles.SCOPES


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Problem(BaseModel):
    type: str
    title: str
    status: int
    detail: str
    code: str
    hint: str | None = None
    field: str | None = None
    retryable: bool = False
    instance: str | None = None
    errors: list[dict[str, str | None]] | None = None


class StartExecution(_In):
    ref: str = Field(
        min_length=3, max_length=300, pattern=r"^[^#\s]+#[^#\s]+$", description="RUNBOOK#PROCEDURE"
    )
    environment: str | None = Field(default=None, max_length=100)
    params: dict[str, Scalar] = Field(default_factory=dict)
    dry_run: bool = False
    confirm: bool = Field(
        default=False, description="Required for high-risk procedures and production"
    )


class Attest(_In):
    items: list[int] | None = Field(
        default=None, description="Checklist item numbers (0-based); all when left out"
    )
    note: str | None = Field(default=None, max_length=2000)


class Decision(_In):
    decision: Literal["approve", "reject"]
    comment: str | None = Field(default=None, max_length=2000)


class Abort(_In):
    reason: str | None = Field(default=None, max_length=2000)


class Resume(_In):
    decision: Literal["retry", "skip", "abort"] | None = None


class Execution(BaseModel):
    id: str
    parent_id: str | None
    runbook: str
    procedure: str
    ref: str
    environment: str
    params: dict[str, Any]
    state: State
    state_name: str
    reason: str | None
    dry_run: bool
    started_by: str
    created_at: Timestamp
    updated_at: Timestamp
    finished_at: Timestamp | None
    queue: str | None = Field(
        default=None,
        description="The workers' queue of its last dispatch (scale-out); null: run in-process",
    )


class ExecutionPage(BaseModel):
    items: list[Execution]
    next_cursor: str | None = Field(description="Pass as cursor for the next page; null at the end")


class StoredExecution(Execution):
    """An ``executions`` row as stored (params as JSON text), parsed while serialising."""

    params: Json[dict[str, Any]]  # same data, read from its stored text


class StoredExecutionPage(BaseModel):
    items: list[StoredExecution]
    next_cursor: str | None


class StepView(BaseModel):
    id: str
    title: str
    kind: StepKind
    line: int
    state: State
    state_name: str
    duration: float | None
    attempts: int
    started_at: Timestamp | None
    finished_at: Timestamp | None
    reason: str | None
    result: Any = None


class ExecutionDetail(Execution):
    title: str
    steps: list[StepView]
    runs: list[dict[str, Any]]
    waiting: dict[str, Any] | None
    children: list[dict[str, Any]]
    can: dict[str, bool]


class Event(BaseModel):
    id: int
    ts: Timestamp
    actor: str
    action: str
    subject: str
    payload: dict[str, Any]


class ApprovalStatus(BaseModel):
    verdict: Literal["pending", "approved", "rejected", "expired"]
    approved_by: list[str]
    quorum: int
    rejected_by: str | None


class ProcedureSummary(BaseModel):
    id: str
    ref: str
    title: str
    risk: Risk
    when_to_use: str | None
    schedule: str | None
    steps: int


class RunbookSummary(BaseModel):
    id: str
    title: str
    purpose: str
    owner: str
    tags: list[str]
    services: list[str]
    file: str
    last_reviewed: str | None
    review_interval: str | None
    procedures: list[ProcedureSummary]


class RunbookDetail(RunbookSummary):
    content_hash: str
    markdown: str
    procedure_details: list[dict[str, Any]]


class Finding(BaseModel):
    path: str
    line: int
    col: int
    code: str
    message: str
    severity: Literal["error", "warning"]


class AuditEvent(BaseModel):
    id: int
    ts: Timestamp
    actor: str
    action: str
    subject: str
    execution_id: str | None
    payload: dict[str, Any]
    hash: str


class AuditPage(BaseModel):
    items: list[AuditEvent]
    next_cursor: str | None = Field(description="Pass as cursor for the next page; null at the end")
    next_before_id: int | None = Field(description="Older form of next_cursor (kept)")


class VerifyReport(BaseModel):
    ok: bool
    checked: int
    first_bad_id: int | None
    problem: str | None


class User(BaseModel):
    username: str
    display_name: str
    email: str | None
    roles: list[str]
    source: str
    disabled: bool
    locked_until: Timestamp | None
    created_at: Timestamp
    last_login_at: Timestamp | None


class UserCreate(_In):
    username: str = Field(min_length=1, max_length=64)
    roles: list[str] = Field(default_factory=lambda: ["viewer"], max_length=20)
    password: str | None = Field(default=None, max_length=1024)
    display_name: str = Field(default="", max_length=200)
    email: str | None = Field(default=None, max_length=200)


class UserCreated(User):
    password: str | None = Field(description="The generated one-time password, shown once")


class RoleGrant(_In):
    role: str = Field(min_length=1, max_length=64)


class Token(BaseModel):
    id: str
    user: str
    name: str
    scopes: list[str]
    created_at: Timestamp
    expires_at: Timestamp
    last_used_at: Timestamp | None
    revoked_at: Timestamp | None
    created_by: str


def _read_only() -> list[Scope]:
    return ["read"]


class TokenCreate(_In):
    name: str = Field(min_length=1, max_length=80)
    scopes: list[Scope] = Field(default_factory=_read_only, min_length=1, max_length=10)
    expires_in_days: int = Field(default=90, ge=1, le=366)
    user: str | None = Field(default=None, max_length=64, description="Admins only: for whom")


class TokenCreated(Token):
    token: str = Field(description="The secret: shown once, store it now")


class Me(BaseModel):
    username: str
    roles: list[str]
    permissions: list[str]
    via: Via
    token: str | None
    scopes: list[str] | None


class Health(BaseModel):
    status: Literal["ok"]
    version: str
