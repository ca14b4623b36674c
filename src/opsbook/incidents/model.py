"""Incident values: statuses, types, severities, roles and the stored incident."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from opsbook.errors import NotFoundError, ValidationError
from opsbook.timeline import fmt_ts as fmt_ts  # noqa: PLC0414 - explicit re-export
from opsbook.timeline import ref_of as ref_of  # noqa: PLC0414 - explicit re-export

STATUSES = ("investigating", "identified", "monitoring", "resolved", "closed")
OPEN_STATUSES = ("investigating", "identified", "monitoring")
TYPES = ("outage", "security", "performance", "data", "other")
SEVERITIES = ("SEV1", "SEV2", "SEV3", "SEV4")
MAJOR = ("SEV1", "SEV2")
ROLES = ("commander", "comms_lead", "scribe", "sme")
IMPACTS = ("extensive", "significant", "moderate", "minor")
URGENCIES = ("critical", "high", "medium", "low")


def severity_of(text: str, *, field_name: str = "severity") -> str:
    """``SEV1``, ``SEV-1``, ``sev1`` or ``1`` → ``SEV1``; anything else is a ValidationError."""
    raw = str(text).strip().upper().replace("-", "").replace(" ", "")
    if raw.isdigit():
        raw = "SEV" + raw
    if raw not in SEVERITIES:
        raise ValidationError(
            f"unknown severity {text!r}",
            field=field_name,
            hint=f"use one of {', '.join(SEVERITIES)}",
        )
    return raw


def rank(severity: str) -> int:
    """1 for SEV1 (the highest) … 4 for SEV4."""
    return SEVERITIES.index(severity) + 1


def higher(a: str, b: str) -> str:
    return a if rank(a) <= rank(b) else b


def choice(value: str, allowed: tuple[str, ...], field_name: str) -> str:
    v = str(value).strip().lower()
    if v not in allowed:
        raise ValidationError(
            f"unknown {field_name.replace('_', ' ')} {value!r}",
            field=field_name,
            hint=f"use one of {', '.join(allowed)}",
        )
    return v


def id_of(ref: str | int) -> int:
    """``INC-12``, ``inc-12`` or ``12`` → 12."""
    text = str(ref).strip().upper().removeprefix("INC-")
    if not text.isdigit():
        raise NotFoundError(
            f"no incident {ref!r}",
            hint="incident references look like INC-12 (see `incidents list`)",
        )
    return int(text)


def parse_ts(ts: str) -> datetime:
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).astimezone(UTC)


def normalise_ts(text: str, field_name: str) -> str:
    """A user-given time (ISO 8601; naive means UTC) in the stored format."""
    try:
        dt = datetime.fromisoformat(str(text).strip().replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValidationError(
            f"{field_name}: {text!r} is not a time",
            field=field_name,
            hint="write an ISO 8601 time such as 2026-11-26T23:40:00Z",
        ) from exc
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return fmt_ts(dt)


def seconds_between(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    return (parse_ts(end) - parse_ts(start)).total_seconds()


@dataclass(frozen=True)
class Incident:
    id: int
    title: str
    type: str
    services: tuple[str, ...]
    impact: str | None
    urgency: str | None
    severity: str
    status: str
    summary: str
    drill: bool
    source: str
    alert_key: str | None
    roles: dict[str, Any]
    created_by: str
    impact_start_at: str | None
    detected_at: str
    declared_at: str
    acknowledged_at: str | None
    acknowledged_by: str | None
    mitigated_at: str | None
    resolved_at: str | None
    closed_at: str | None
    updated_at: str
    level: int
    pending_severity: str | None = None
    pending_by: str | None = None
    pending_reason: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ref(self) -> str:
        return ref_of(self.id)

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Incident:
        return cls(
            id=int(row["id"]),
            title=str(row["title"]),
            type=str(row["type"]),
            services=tuple(json.loads(row["services"])),
            impact=row["impact"],
            urgency=row["urgency"],
            severity=str(row["severity"]),
            status=str(row["status"]),
            summary=str(row["summary"] or ""),
            drill=bool(row["drill"]),
            source=str(row["source"]),
            alert_key=row["alert_key"],
            roles=dict(json.loads(row["roles"] or "{}")),
            created_by=str(row["created_by"]),
            impact_start_at=row["impact_start_at"],
            detected_at=str(row["detected_at"]),
            declared_at=str(row["declared_at"]),
            acknowledged_at=row["acknowledged_at"],
            acknowledged_by=row["acknowledged_by"],
            mitigated_at=row["mitigated_at"],
            resolved_at=row["resolved_at"],
            closed_at=row["closed_at"],
            updated_at=str(row["updated_at"]),
            level=int(row["level"]),
            pending_severity=row["pending_severity"],
            pending_by=row["pending_by"],
            pending_reason=row["pending_reason"],
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "ref": self.ref,
            "id": self.id,
            "title": self.title,
            "type": self.type,
            "services": list(self.services),
            "impact": self.impact,
            "urgency": self.urgency,
            "severity": self.severity,
            "status": self.status,
            "summary": self.summary,
            "drill": self.drill,
            "source": self.source,
            "alert_key": self.alert_key,
            "roles": self.roles,
            "created_by": self.created_by,
            "impact_start_at": self.impact_start_at,
            "detected_at": self.detected_at,
            "declared_at": self.declared_at,
            "acknowledged_at": self.acknowledged_at,
            "acknowledged_by": self.acknowledged_by,
            "mitigated_at": self.mitigated_at,
            "resolved_at": self.resolved_at,
            "closed_at": self.closed_at,
            "updated_at": self.updated_at,
            "escalation_level": self.level,
            "pending_severity": self.pending_severity,
            "pending_by": self.pending_by,
            "time_to_acknowledge_s": seconds_between(self.declared_at, self.acknowledged_at),
            "time_to_resolve_s": seconds_between(self.detected_at, self.resolved_at),
        }


@dataclass(frozen=True)
class TimelineEntry:
    ts: str
    actor: str
    kind: str
    payload: dict[str, Any]
    source: str = "incident"  # incident | execution

    def to_dict(self) -> dict[str, Any]:
        return {
            "ts": self.ts,
            "actor": self.actor,
            "kind": self.kind,
            "payload": self.payload,
            "source": self.source,
        }
