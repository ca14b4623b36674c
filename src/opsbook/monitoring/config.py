"""Monitoring configuration read from ``environments/NAME.yaml``: probes per service, SLOs,
approved maintenance windows, alert-to-runbook mapping and escalation thresholds.

Every mistake is a :class:`ValidationError` pointing at ``file:line`` (unknown services,
invalid CEL, impossible SLO targets), so nothing half-valid is ever run or stored.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from opsbook.errors import Location, NotFoundError, ValidationError
from opsbook.monitoring.probe_specs import parse_probe
from opsbook.monitoring.slo_specs import parse_slo, parse_sloth
from opsbook.monitoring.specs import (
    SEVERITIES,
    LineDict,
    duration_at,
    load_yaml_with_lines,
    location_of,
)

# Probe and Slo live in .specs (below the spec parsers); importers keep using config.
from opsbook.monitoring.specs import Probe as Probe  # noqa: PLC0414 - explicit re-export
from opsbook.monitoring.specs import Slo as Slo  # noqa: PLC0414 - explicit re-export
from opsbook.workspace import Workspace

#: Without ``monitoring.escalation``: an unacknowledged paging alert goes to Level 2 after
#: 15 minutes (contacts.yaml's ack_timeout), to Level 3 after an hour.
DEFAULT_ESCALATION = (
    {"severity": "page", "after": "15m", "level": "level-2"},
    {"severity": "page", "after": "1h", "level": "level-3"},
)


@dataclass(frozen=True)
class Maintenance:
    start: datetime
    end: datetime
    services: tuple[str, ...]  # empty: every service
    approved_by: str | None
    change: str | None = None

    @property
    def approved(self) -> bool:
        return bool(self.approved_by)


@dataclass(frozen=True)
class Escalation:
    """An unacknowledged firing alert of ``severity`` older than ``after`` seconds is
    escalated to ``level`` (a level name in contacts.yaml)."""

    severity: str
    after: float
    level: str


@dataclass(frozen=True)
class MonitoringConfig:
    environment: str
    path: Path
    services: tuple[str, ...]
    probes: tuple[Probe, ...] = ()
    slos: tuple[Slo, ...] = ()
    maintenance: tuple[Maintenance, ...] = ()
    alert_runbooks: Mapping[str, str] = field(default_factory=dict)
    service_runbooks: Mapping[str, str] = field(default_factory=dict)
    escalation: tuple[Escalation, ...] = ()
    prometheus: str | None = None
    databases: Mapping[str, Any] = field(default_factory=dict)
    metrics_urls: Mapping[str, str] = field(default_factory=dict)
    kpi_thresholds: Mapping[str, Mapping[str, tuple[str, float]]] = field(default_factory=dict)
    auto_run: tuple[Any, ...] = ()  # autorun.AutoRun rules

    def probe(self, name: str) -> Probe:
        for p in self.probes:
            if p.name == name:
                return p
        raise NotFoundError(f"no probe {name!r} in {self.environment}", hint="see monitor check")

    def runbook_for(self, *, alertname: str, service: str | None) -> str | None:
        if alertname in self.alert_runbooks:
            return self.alert_runbooks[alertname]
        if service and service in self.service_runbooks:
            return self.service_runbooks[service]
        return self.service_runbooks.get("*")


_ENV_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def _when(value: Any, *, path: Path, node: Any) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValidationError(
            f"{value!r} is not a date and time",
            location=location_of(path, node),
            hint="write ISO 8601 in UTC, e.g. 2026-11-14T02:00:00Z",
        ) from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _maintenance(path: Path, node: Any, services: tuple[str, ...]) -> Maintenance:
    if not isinstance(node, dict):
        raise ValidationError(
            "a maintenance window must be a mapping", location=location_of(path, node)
        )
    start = _when(node.get("start"), path=path, node=node)
    end = _when(node.get("end"), path=path, node=node)
    if end <= start:
        raise ValidationError(
            "maintenance window ends before it starts",
            location=location_of(path, node),
            hint="end > start",
        )
    names = tuple(str(s) for s in node.get("services", []) or [])
    for s in names:
        if s not in services:
            raise ValidationError(
                f"maintenance window names unknown service {s!r}",
                location=location_of(path, node),
                hint=f"use one of: {', '.join(services)}",
            )
    return Maintenance(
        start=start,
        end=end,
        services=names,
        approved_by=str(node["approved_by"]) if node.get("approved_by") else None,
        change=str(node["change"]) if node.get("change") else None,
    )


def _kpi_thresholds(
    path: Path, mon: Mapping[str, Any], services: tuple[str, ...]
) -> dict[str, dict[str, tuple[str, float]]]:
    from opsbook.monitoring.kpis import KPIS  # noqa: PLC0415

    raw = mon.get("kpi_thresholds") or {}
    out: dict[str, dict[str, tuple[str, float]]] = {}
    for service, kpis in raw.items():
        if service not in services:
            raise ValidationError(
                f"kpi_thresholds names unknown service {service!r}",
                location=location_of(path, raw),
                hint=f"use one of: {', '.join(services)}",
            )
        for kpi, rule in (kpis or {}).items():
            bound = next((b for b in ("max", "min") if isinstance(rule, dict) and b in rule), None)
            if kpi not in KPIS or bound is None:
                raise ValidationError(
                    f"kpi_thresholds.{service}.{kpi}: unknown KPI or no max/min",
                    location=location_of(path, kpis),
                    hint=f"KPIs: {', '.join(KPIS)}; write e.g. error_rate: {{max: 0.01}}",
                )
            out.setdefault(str(service), {})[str(kpi)] = (bound, float(rule[bound]))
    return out


def load_monitoring(workspace: Workspace, environment: str) -> MonitoringConfig:
    """The monitoring configuration of one environment, validated."""
    path = workspace.environments_dir / f"{environment}.yaml"
    if not _ENV_NAME.fullmatch(environment) or not path.is_file():
        known = ", ".join(workspace.environment_names()) or "none"
        raise NotFoundError(f"unknown environment {environment!r}", hint=f"use one of: {known}")
    data = load_yaml_with_lines(path) or {}
    if not isinstance(data, dict):
        raise ValidationError("environment file must be a mapping", location=Location(str(path), 1))
    svc_nodes = [s for s in data.get("services", []) or [] if isinstance(s, dict)]
    services = tuple(str(s.get("name")) for s in svc_nodes)
    mon = data.get("monitoring") or {}
    alerting = data.get("alerting") or {}
    if not isinstance(mon, dict) or not isinstance(alerting, dict):
        raise ValidationError(
            "monitoring and alerting must be mappings", location=location_of(path, data), hint=""
        )
    mon = LineDict(mon)  # top-level slos/maintenance and alerting.* may sit beside it
    for key in ("slos", "sloth", "maintenance"):
        if key in data:
            mon[key] = data[key]
    for key, target in (
        ("runbooks", "alert_runbooks"),
        ("service_runbooks", "service_runbooks"),
        ("escalation", "escalation"),
        ("kpi_thresholds", "kpi_thresholds"),
        ("auto_run", "auto_run"),
    ):
        if key in alerting:
            mon[target] = alerting[key]
    probes: list[Probe] = []
    for s in svc_nodes:
        for node in s.get("probes", []) or []:
            scope = {"service": s, "env": data}
            probes.append(parse_probe(environment, path, str(s.get("name")), node, services, scope))
    by_name = {str(s.get("name")): s for s in svc_nodes}
    for node in mon.get("probes", []) or []:
        svc = str(node.get("service", "")) if isinstance(node, dict) else ""
        scope = {"service": by_name.get(svc, {}), "env": data}
        probes.append(parse_probe(environment, path, svc, node, services, scope))
    seen: set[str] = set()
    for p in probes:
        if p.name in seen:
            raise ValidationError(
                f"probe name {p.name!r} is used twice", location=Location(str(path)), hint="rename"
            )
        seen.add(p.name)
    slos = [parse_slo(path, n, services) for n in mon.get("slos", []) or []]
    for ref in mon.get("sloth", []) or []:
        slos.extend(parse_sloth((workspace.root / str(ref)).resolve(), services))
    for slo in slos:
        if slo.probe and slo.probe not in seen:
            raise ValidationError(
                f"SLO {slo.name!r} names unknown probe {slo.probe!r}",
                location=Location(str(path)),
                hint=f"use one of: {', '.join(sorted(seen))}",
            )
    escalation = []
    for rule in mon.get("escalation", DEFAULT_ESCALATION) or []:
        if not isinstance(rule, dict) or rule.get("severity") not in SEVERITIES:
            raise ValidationError(
                "each escalation rule needs severity (page, ticket or info), after and level",
                location=location_of(path, rule),
                hint="e.g. {severity: page, after: 15m, level: level-2}",
            )
        escalation.append(
            Escalation(
                severity=str(rule["severity"]),
                after=duration_at(rule.get("after", "15m"), path=path, node=rule, what="after"),
                level=str(rule.get("level", "level-1")),
            )
        )
    from opsbook.monitoring.autorun import parse_rules  # noqa: PLC0415

    try:
        auto_run = parse_rules(mon.get("auto_run"), where="alerting.auto_run")
    except ValidationError as exc:
        raise ValidationError(
            exc.message, location=location_of(path, alerting or mon), hint=exc.hint
        ) from exc
    return MonitoringConfig(
        auto_run=auto_run,
        kpi_thresholds=_kpi_thresholds(path, mon, services),
        environment=environment,
        path=path,
        services=services,
        probes=tuple(probes),
        slos=tuple(slos),
        maintenance=tuple(
            _maintenance(path, n, services) for n in mon.get("maintenance", []) or []
        ),
        alert_runbooks={str(k): str(v) for k, v in (mon.get("alert_runbooks") or {}).items()},
        service_runbooks={str(k): str(v) for k, v in (mon.get("service_runbooks") or {}).items()},
        escalation=tuple(escalation),
        prometheus=str(mon["prometheus"]) if mon.get("prometheus") else None,
        databases=dict(data.get("databases") or {}),
        metrics_urls={
            str(s.get("name")): str(s["metrics_url"]) for s in svc_nodes if s.get("metrics_url")
        },
    )


def monitored_environments(workspace: Workspace) -> list[str]:
    """Environments ``opsbook serve`` probes: ``[monitoring] environments`` in opsbook.toml,
    else the default environment; ``environments = []`` monitors none."""
    section = workspace.config.get("monitoring", {})
    if "environments" in section:  # [] switches the probes off
        return [str(e) for e in section["environments"] or []]
    return [workspace.default_environment]
