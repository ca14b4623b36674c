"""REST API routes for monitoring (under /api/v1): the Alertmanager webhook, alerts and
silences, probe results, SLOs, SLA reports and morning health check reports."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import TYPE_CHECKING, Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Path, Query
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, TypeAdapter
from starlette.requests import Request
from starlette.responses import Response

from opsbook.api import pages
from opsbook.api.auth import context_of, principal_of
from opsbook.api.deps import Caller, Ctx, permission_first, raw_endpoint
from opsbook.api.problems import MEDIA_TYPE
from opsbook.api.schemas import Timestamp
from opsbook.errors import OpsbookError, ValidationError
from opsbook.users.access import require

if TYPE_CHECKING:
    from opsbook.executions.context import AppContext
    from opsbook.monitoring.ingest_batch import IngestBatch

router = APIRouter(tags=["monitoring"])

MAX_BODY = 1024 * 1024  # bytes of one Alertmanager delivery (1000 alerts fit easily)
EnvName = Annotated[str | None, Query(max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]
Label = Annotated[str, Field(max_length=4096)]


class PayloadTooLarge(OpsbookError):
    http_status = 413
    exit_code = 2
    code = "payload_too_large"


# -- bodies ---------------------------------------------------------------------------------
class AmAlert(BaseModel):
    model_config = ConfigDict(extra="ignore")
    status: Literal["firing", "resolved"]
    labels: dict[str, Label] = Field(description="Must include alertname")
    annotations: dict[str, Label] = Field(default_factory=dict)
    startsAt: AwareDatetime
    endsAt: AwareDatetime | None = None
    generatorURL: str | None = Field(default=None, max_length=4096)
    fingerprint: str | None = Field(default=None, min_length=1, max_length=128)


class AmWebhook(BaseModel):
    """Alertmanager's webhook payload, version 4."""

    model_config = ConfigDict(extra="ignore")
    version: Literal["4"]
    groupKey: str = Field(max_length=8192)
    truncatedAlerts: int = Field(default=0, ge=0)
    status: Literal["firing", "resolved"]
    receiver: str = Field(max_length=1024)
    groupLabels: dict[str, Label] = Field(default_factory=dict)
    commonLabels: dict[str, Label] = Field(default_factory=dict)
    commonAnnotations: dict[str, Label] = Field(default_factory=dict)
    externalURL: str | None = Field(default=None, max_length=4096)
    alerts: list[AmAlert] = Field(max_length=1000)


class IngestOut(BaseModel):
    received: int
    created: int
    resolved: int
    refired: int
    duplicates: int


class AlertOut(BaseModel):
    id: int
    fingerprint: str
    source: str
    alertname: str
    service: str | None
    environment: str | None
    severity: str
    status: Literal["firing", "resolved"]
    summary: str | None
    labels: dict[str, str]
    annotations: dict[str, str]
    runbook: str | None
    starts_at: Timestamp
    ends_at: Timestamp | None
    last_received: Timestamp
    received: int
    acked_by: str | None
    acked_at: Timestamp | None
    ack_comment: str | None
    escalated_level: int
    silenced: int | None = None


class AlertPage(BaseModel):
    items: list[AlertOut]
    next_cursor: str | None = Field(description="Pass as cursor for the next page; null at the end")


class AckIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    comment: str = Field(default="", max_length=1000)


class SilenceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    matchers: (
        dict[Annotated[str, Field(min_length=1, max_length=100)], Label]
        | Annotated[list[Annotated[str, Field(min_length=2, max_length=1200)]], Field(min_length=1)]
    ) = Field(
        min_length=1,
        max_length=20,
        description="All must match: {label: value} equalities, or matcher texts as amtool"
        " writes them: label=value, label!=value, label=~regex, label!~regex (a regex must"
        ' match the whole value), e.g. ["service=payment", "pod=~"pay-.*""]',
    )
    duration_minutes: int = Field(ge=1, le=43200)
    comment: str = Field(min_length=1, max_length=1000, pattern=r"\S")


class SilenceOut(BaseModel):
    id: int
    matchers: list[str] = Field(description="Matcher texts, e.g. service=payment, pod=~pay-.*")
    starts_at: Timestamp
    ends_at: Timestamp
    created_by: str
    comment: str
    created_at: Timestamp


class ProbeOut(BaseModel):
    service: str
    probe: str
    kind: str
    ts: int
    ok: bool
    latency_ms: int
    detail: str | None


class HealthReportOut(BaseModel):
    execution_id: str
    environment: str
    created_at: Timestamp
    markdown: str
    html: str


@cache
def _webhook_adapter() -> TypeAdapter[AmWebhook]:
    return TypeAdapter(AmWebhook)


def _inline_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON schema with its $defs inlined (the spec documents a body FastAPI does
    not parse itself: the webhook reads it with a size limit first)."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return walk(defs[ref.rsplit("/", 1)[1]])
            return {k: walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    return dict(walk(schema))


def _problem(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }


# -- Alertmanager webhook -------------------------------------------------------------------
async def _read_limited(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_BODY:
        raise PayloadTooLarge(
            f"the body is larger than {MAX_BODY} bytes",
            field="body",
            hint="lower max_alerts in the Alertmanager webhook_config",
        )
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise PayloadTooLarge(
                f"the body is larger than {MAX_BODY} bytes",
                field="body",
                hint="lower max_alerts in the Alertmanager webhook_config",
            )
        chunks.append(chunk)
    return b"".join(chunks)


def _ingest_batch(ctx: AppContext) -> IngestBatch:
    from opsbook.monitoring.ingest_batch import IngestBatch  # noqa: PLC0415
    from opsbook.monitoring.service import runbook_resolver  # noqa: PLC0415

    found = ctx.cache.get("monitoring.ingest_batch")
    if not isinstance(found, IngestBatch):
        found = ctx.cache["monitoring.ingest_batch"] = IngestBatch(
            db=ctx.db, runbook_for=lambda: runbook_resolver(ctx.workspace, ctx.cache)
        )
    return found


@router.post(
    "/alerts/alertmanager",
    operation_id="receiveAlertmanagerWebhook",
    response_model=IngestOut,
    summary="Receive an Alertmanager webhook (version 4); idempotent on fingerprint",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": _inline_schema(AmWebhook)}},
        }
    },
    responses={413: _problem("The body is larger than 1 MiB")},
)
@raw_endpoint  # a hot path: served without FastAPI's request handler
async def alertmanager_webhook(request: Request) -> Response:
    from opsbook.monitoring.webhook import parse_webhook  # noqa: PLC0415

    ctx = context_of(request)
    caller = principal_of(request)
    require(db=ctx.db, principal=caller, permission="alerts:ingest", subject="alerts:alertmanager")
    raw = await _read_limited(request)
    try:
        body = orjson.loads(raw)
    except ValueError as exc:  # orjson.JSONDecodeError is one
        raise ValidationError(
            f"the body is not JSON: {exc}", field="body", hint="send the webhook's JSON"
        ) from exc
    # Checked field by field here (the AmWebhook schema documents the same rules), then
    # stored with the deliveries that arrived in the same turn of the event loop.
    meta, incoming = parse_webhook(body)
    result = await _ingest_batch(ctx).submit(incoming=incoming, meta=meta, actor=caller.username)
    return Response(orjson.dumps(result.to_dict()), media_type="application/json")


# -- alerts and silences --------------------------------------------------------------------
@router.get(
    "/alerts",
    operation_id="listAlerts",
    response_model=AlertPage,
    summary="Alerts, newest first (a page: limit and cursor)",
)
async def list_alerts(
    ctx: Ctx,
    caller: Caller,
    status: Literal["firing", "resolved", "all"] = "firing",
    since_hours: Annotated[int | None, Query(ge=1, le=24 * 400)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: pages.Cursor = None,
) -> dict[str, Any]:
    from opsbook.monitoring import alerts  # noqa: PLC0415

    require(db=ctx.db, principal=caller, permission="monitoring:read", subject="alerts")
    since = datetime.now(UTC) - timedelta(hours=since_hours) if since_hours else None
    found = alerts.list_alerts(
        ctx.db,
        status=None if status == "all" else status,
        since=since,
        limit=limit + 1,
        before=_alert_cursor(cursor) if cursor else None,
    )
    return pages.page(found, limit, lambda a: pages.encode(a["starts_at"], a["id"]))


def _alert_cursor(cursor: str) -> tuple[str, int]:
    starts_at, alert_id = pages.decode(cursor, str, int)
    return str(starts_at), int(alert_id)


AlertRef = Annotated[str, Path(pattern=r"^[0-9a-f]{1,64}$", description="Id or fingerprint")]


@router.post(
    "/alerts/{alert}/ack",
    operation_id="acknowledgeAlert",
    response_model=AlertOut,
    summary="Acknowledge an alert",
)
@permission_first("alerts:manage", "alert:{alert}")
async def ack_alert(ctx: Ctx, caller: Caller, alert: AlertRef, body: AckIn) -> dict[str, Any]:
    from opsbook.monitoring import alerts  # noqa: PLC0415

    require(db=ctx.db, principal=caller, permission="alerts:manage", subject=f"alert:{alert}")
    row = alerts.acknowledge(ctx.db, ref=alert, actor=caller.username, comment=body.comment)
    row["labels"] = json.loads(row["labels"])
    row["annotations"] = json.loads(row["annotations"])
    return row


@router.get(
    "/silences",
    operation_id="listSilences",
    response_model=list[SilenceOut],
    summary="Active silences",
)
async def list_silences(ctx: Ctx, caller: Caller, include_expired: bool = False) -> Any:
    from opsbook.monitoring import alerts  # noqa: PLC0415

    require(db=ctx.db, principal=caller, permission="monitoring:read", subject="silences")
    return alerts.list_silences(ctx.db, include_expired=include_expired)


@router.post(
    "/silences",
    operation_id="createSilence",
    response_model=SilenceOut,
    status_code=201,
    summary="Silence alerts",
)
@permission_first("alerts:manage", "silences")
async def create_silence(ctx: Ctx, caller: Caller, body: SilenceIn) -> dict[str, Any]:
    from opsbook.monitoring import alerts  # noqa: PLC0415

    require(db=ctx.db, principal=caller, permission="alerts:manage", subject="silences")
    return alerts.create_silence(
        ctx.db,
        matchers=body.matchers,
        duration=timedelta(minutes=body.duration_minutes),
        actor=caller.username,
        comment=body.comment,
    )


@router.delete(
    "/silences/{silence_id}",
    operation_id="expireSilence",
    status_code=204,
    summary="Expire a silence now",
)
async def expire_silence(
    ctx: Ctx, caller: Caller, silence_id: Annotated[int, Path(ge=1, le=2**62)]
) -> Response:
    from opsbook.monitoring import alerts  # noqa: PLC0415

    require(
        db=ctx.db, principal=caller, permission="alerts:manage", subject=f"silence:{silence_id}"
    )
    alerts.expire_silence(ctx.db, silence_id=silence_id, actor=caller.username)
    return Response(status_code=204)


# -- probes, SLOs, reports ------------------------------------------------------------------
@router.get(
    "/monitoring/probes",
    operation_id="listProbeResults",
    response_model=list[ProbeOut],
    summary="Latest probe results",
)
async def probes(ctx: Ctx, caller: Caller, environment: EnvName = None) -> Any:
    from opsbook.monitoring import store  # noqa: PLC0415

    require(db=ctx.db, principal=caller, permission="monitoring:read", subject="probes")
    env = environment or ctx.workspace.default_environment
    return store.latest(ctx.db, environment=env)


@router.get(
    "/monitoring/slos",
    operation_id="listSloStatuses",
    response_model=list[dict[str, Any]],
    summary="SLO budgets",
)
async def slos(ctx: Ctx, caller: Caller, environment: EnvName = None) -> Any:
    from opsbook.monitoring.background import prometheus_slos  # noqa: PLC0415
    from opsbook.monitoring.config import load_monitoring  # noqa: PLC0415
    from opsbook.monitoring.service import slo_statuses  # noqa: PLC0415

    require(db=ctx.db, principal=caller, permission="monitoring:read", subject="slos")
    config = load_monitoring(ctx.workspace, environment or ctx.workspace.default_environment)
    return slo_statuses(db=ctx.db, config=config, prometheus=prometheus_slos(ctx))


@router.get(
    "/monitoring/sla",
    operation_id="getSlaReport",
    response_model=dict[str, Any],
    summary="SLA report of a month",
)
async def sla(
    ctx: Ctx,
    caller: Caller,
    month: Annotated[str, Query(pattern=r"^[1-9]\d{3}-(0[1-9]|1[0-2])$", description="YYYY-MM")],
    environment: EnvName = None,
) -> Any:
    from opsbook.monitoring.config import load_monitoring  # noqa: PLC0415
    from opsbook.monitoring.sla import sla_report  # noqa: PLC0415

    require(db=ctx.db, principal=caller, permission="monitoring:read", subject="sla")
    config = load_monitoring(ctx.workspace, environment or ctx.workspace.default_environment)
    return sla_report(ctx.db, config=config, month=month).to_dict()


@router.get(
    "/monitoring/health-reports/{execution_id}",
    operation_id="getHealthReport",
    response_model=HealthReportOut,
    summary="The morning health check report of an execution",
)
async def health_report(
    ctx: Ctx,
    caller: Caller,
    execution_id: Annotated[str, Path(pattern=r"^[0-9a-f]{1,32}$")],
) -> Any:
    from opsbook.monitoring.health import get_report  # noqa: PLC0415

    require(db=ctx.db, principal=caller, permission="monitoring:read", subject="health-reports")
    return get_report(ctx.db, execution_id=execution_id)
