"""Monitoring configuration read from ``environments/NAME.yaml``: probes per service, SLOs,
approved maintenance windows, alert-to-runbook mapping and escalation thresholds.

Every mistake is a :class:`ValidationError` pointing at ``file:line`` (unknown services,
invalid CEL, impossible SLO targets), so nothing half-valid is ever run or stored.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from opsbook.errors import ExpressionError, Location, NotFoundError, ValidationError
from opsbook.workspace import Workspace

PROBE_KINDS = ("http", "tcp", "tls", "sql", "promql")
DEFAULT_INTERVAL = 30.0
DEFAULT_TIMEOUT = 5.0
SEVERITIES = ("page", "ticket", "info")


class _LineDict(dict[str, Any]):
    line: int = 0


def load_yaml_with_lines(path: Path) -> Any:
    """Parse YAML keeping the 1-based line of every mapping (``_LineDict.line``)."""
    import yaml  # noqa: PLC0415

    class Loader(yaml.SafeLoader):
        pass

    def construct(loader: yaml.SafeLoader, node: yaml.MappingNode) -> _LineDict:
        out = _LineDict(loader.construct_mapping(node, deep=True))
        out.line = node.start_mark.line + 1
        return out

    Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct)
    try:
        return yaml.load(path.read_text(encoding="utf-8"), Loader=Loader)  # noqa: S506
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise ValidationError(
            f"not valid YAML: {getattr(exc, 'problem', exc)}",
            location=Location(str(path), mark.line + 1 if mark else 0),
            hint="fix the YAML syntax",
        ) from exc


@dataclass(frozen=True)
class Probe:
    environment: str
    service: str
    name: str
    kind: str
    target: Mapping[str, Any]
    interval: float = DEFAULT_INTERVAL
    timeout: float = DEFAULT_TIMEOUT
    expect: tuple[str, ...] = ()
    severity: str = "page"
    runbook: str | None = None
    failures_to_alert: int = 2


@dataclass(frozen=True)
class Slo:
    name: str
    service: str
    objective: float  # percent, 0 < objective < 100
    period_days: int = 30
    probe: str | None = None  # the probe whose results are the SLI (default: the service's)
    latency_ms: int | None = None  # a latency SLO: good = ok and faster than this
    error_query: str | None = None  # Sloth: PromQL of bad events (evaluated by Prometheus)
    total_query: str | None = None

    @property
    def budget(self) -> float:
        return 1.0 - self.objective / 100.0


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


def _loc(path: Path, node: Any) -> Location:
    return Location(str(path), getattr(node, "line", 0))


def _duration(value: Any, *, path: Path, node: Any, what: str) -> float:
    from opsbook.runbooks._values import parse_duration  # noqa: PLC0415

    try:
        seconds = float(value) if isinstance(value, int | float) else parse_duration(str(value))
    except ValueError as exc:
        raise ValidationError(
            f"{what}: {value!r} is not a duration",
            location=_loc(path, node),
            hint="write e.g. 10s, 5m, 1h",
        ) from exc
    if seconds <= 0:
        raise ValidationError(f"{what} must be positive", location=_loc(path, node), hint="e.g. 30s")
    return seconds


def _probe(
    env: str, path: Path, service: str, node: Any, services: tuple[str, ...]
) -> Probe:
    from opsbook.expressions import compile_expression  # noqa: PLC0415

    if not isinstance(node, dict):
        raise ValidationError(
            "a probe must be a mapping", location=_loc(path, node), hint="see docs/monitoring.md"
        )
    service = str(node.get("service", service))
    if service not in services:
        raise ValidationError(
            f"probe {node.get('name')!r} names unknown service {service!r}",
            location=_loc(path, node),
            hint=f"use one of: {', '.join(services) or 'none (add services: first)'}",
        )
    kinds = [k for k in PROBE_KINDS if k in node]
    if len(kinds) != 1:
        raise ValidationError(
            f"probe {node.get('name')!r} must have exactly one of {', '.join(PROBE_KINDS)}",
            location=_loc(path, node),
            hint="e.g. http: {url: http://127.0.0.1:18103/health}",
        )
    kind = kinds[0]
    target = node[kind]
    if isinstance(target, str):
        target = {"url": target} if kind == "http" else {"query": target}
        if kind in ("tcp", "tls"):
            host, _, port = str(node[kind]).rpartition(":")
            target = {"host": host, "port": port}
    if not isinstance(target, dict):
        raise ValidationError(
            f"{kind} must be a mapping", location=_loc(path, node), hint="see docs/monitoring.md"
        )
    needed = {"http": ("url",), "tcp": ("host", "port"), "tls": ("host", "port")}
    needed |= {"sql": ("db", "query"), "promql": ("query",)}
    for key in needed[kind]:
        if not target.get(key):
            raise ValidationError(
                f"{kind} probe {node.get('name')!r} needs {key}",
                location=_loc(path, node),
                hint=f"add {kind}: {{{key}: …}}",
            )
    name = str(node.get("name") or f"{service}-{kind}")
    expect = node.get("expect", [])
    if isinstance(expect, str):
        expect = [expect]
    for expr in expect:
        try:
            compile_expression(str(expr), location=_loc(path, node))
        except ExpressionError as exc:
            raise ValidationError(
                f"probe {name!r}: {exc.message}", location=exc.location, hint=exc.hint
            ) from exc
    severity = str(node.get("severity", "page"))
    if severity not in SEVERITIES:
        raise ValidationError(
            f"probe {name!r}: severity must be one of {', '.join(SEVERITIES)}",
            location=_loc(path, node),
            hint="page wakes someone, ticket waits for working hours",
        )
    return Probe(
        environment=env,
        service=service,
        name=name,
        kind=kind,
        target=dict(target),
        interval=_duration(node.get("interval", DEFAULT_INTERVAL), path=path, node=node,
                           what="interval"),
        timeout=_duration(node.get("timeout", DEFAULT_TIMEOUT), path=path, node=node,
                          what="timeout"),
        expect=tuple(str(e) for e in expect),
        severity=severity,
        runbook=str(node["runbook"]) if node.get("runbook") else None,
        failures_to_alert=int(node.get("failures_to_alert", 2)),
    )


def _objective(value: Any, *, path: Path, node: Any, name: str) -> float:
    try:
        objective = float(value)
    except (TypeError, ValueError) as exc:
        raise ValidationError(
            f"SLO {name!r}: objective {value!r} is not a number",
            location=_loc(path, node),
            hint="a percentage such as 99.9",
        ) from exc
    if not 0 < objective < 100:
        raise ValidationError(
            f"SLO {name!r}: objective must be above 0 and below 100 (got {objective:g})",
            location=_loc(path, node),
            hint="a percentage such as 99.9; 100 leaves no error budget at all",
        )
    return objective


def _slo(path: Path, node: Any, services: tuple[str, ...]) -> Slo:
    if not isinstance(node, dict) or not node.get("name"):
        raise ValidationError(
            "an SLO must be a mapping with a name", location=_loc(path, node), hint="name: …"
        )
    name = str(node["name"])
    service = str(node.get("service", ""))
    if service not in services:
        raise ValidationError(
            f"SLO {name!r} names unknown service {service!r}",
            location=_loc(path, node),
            hint=f"use one of: {', '.join(services)}",
        )
    period = _duration(node.get("period", "30d"), path=path, node=node, what="period")
    return Slo(
        name=name,
        service=service,
        objective=_objective(node.get("objective"), path=path, node=node, name=name),
        period_days=max(1, round(period / 86400)),
        probe=str(node["probe"]) if node.get("probe") else None,
        latency_ms=int(node["latency_ms"]) if node.get("latency_ms") else None,
    )


def parse_sloth(path: Path, services: tuple[str, ...] | None = None) -> tuple[Slo, ...]:
    """SLOs from a Sloth ``prometheus/v1`` spec (service, slos[] with objective and
    sli.events error_query/total_query). OpenSLO-style ``target`` (0..1) is accepted too."""
    data = load_yaml_with_lines(path)
    if not isinstance(data, dict) or not isinstance(data.get("slos"), list):
        raise ValidationError(
            "not a Sloth SLO spec (expected version: prometheus/v1, service, slos: [...])",
            location=Location(str(path), 1),
            hint="see https://sloth.dev/specs/prometheus/v1",
        )
    service = str(data.get("service", ""))
    if services is not None and service not in services:
        raise ValidationError(
            f"Sloth spec names unknown service {service!r}",
            location=_loc(path, data),
            hint=f"use one of: {', '.join(services)}",
        )
    out = []
    for node in data["slos"]:
        name = str(node.get("name", "")) if isinstance(node, dict) else ""
        if not name:
            raise ValidationError("every SLO needs a name", location=_loc(path, node), hint="name:")
        raw = node.get("objective", node.get("target"))
        if "target" in node and "objective" not in node and isinstance(raw, float) and raw < 1:
            raw = raw * 100
        objective = _objective(raw, path=path, node=node, name=name)
        events = (node.get("sli") or {}).get("events") or {}
        out.append(
            Slo(
                name=f"{service}-{name}",
                service=service,
                objective=objective,
                error_query=events.get("error_query") or events.get("errorQuery"),
                total_query=events.get("total_query") or events.get("totalQuery"),
            )
        )
    return tuple(out)


def _when(value: Any, *, path: Path, node: Any) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValidationError(
            f"{value!r} is not a date and time",
            location=_loc(path, node),
            hint="write ISO 8601 in UTC, e.g. 2026-11-14T02:00:00Z",
        ) from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _maintenance(path: Path, node: Any, services: tuple[str, ...]) -> Maintenance:
    if not isinstance(node, dict):
        raise ValidationError("a maintenance window must be a mapping", location=_loc(path, node))
    start = _when(node.get("start"), path=path, node=node)
    end = _when(node.get("end"), path=path, node=node)
    if end <= start:
        raise ValidationError(
            "maintenance window ends before it starts", location=_loc(path, node), hint="end > start"
        )
    names = tuple(str(s) for s in node.get("services", []) or [])
    for s in names:
        if s not in services:
            raise ValidationError(
                f"maintenance window names unknown service {s!r}",
                location=_loc(path, node),
                hint=f"use one of: {', '.join(services)}",
            )
    return Maintenance(
        start=start,
        end=end,
        services=names,
        approved_by=str(node["approved_by"]) if node.get("approved_by") else None,
        change=str(node["change"]) if node.get("change") else None,
    )


def load_monitoring(workspace: Workspace, environment: str) -> MonitoringConfig:
    """The monitoring configuration of one environment, validated."""
    path = workspace.environments_dir / f"{environment}.yaml"
    if not path.is_file():
        known = ", ".join(workspace.environment_names()) or "none"
        raise NotFoundError(f"unknown environment {environment!r}", hint=f"use one of: {known}")
    data = load_yaml_with_lines(path) or {}
    if not isinstance(data, dict):
        raise ValidationError("environment file must be a mapping", location=Location(str(path), 1))
    svc_nodes = [s for s in data.get("services", []) or [] if isinstance(s, dict)]
    services = tuple(str(s.get("name")) for s in svc_nodes)
    mon = data.get("monitoring") or {}
    if not isinstance(mon, dict):
        raise ValidationError("monitoring must be a mapping", location=_loc(path, data))
    probes: list[Probe] = []
    for s in svc_nodes:
        for node in s.get("probes", []) or []:
            probes.append(_probe(environment, path, str(s.get("name")), node, services))
    for node in mon.get("probes", []) or []:
        probes.append(_probe(environment, path, str(node.get("service", "")), node, services))
    seen: set[str] = set()
    for p in probes:
        if p.name in seen:
            raise ValidationError(
                f"probe name {p.name!r} is used twice", location=Location(str(path)), hint="rename"
            )
        seen.add(p.name)
    slos = [_slo(path, n, services) for n in mon.get("slos", []) or []]
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
    for sev, rule in (mon.get("escalation") or {}).items():
        escalation.append(
            Escalation(
                severity=str(sev),
                after=_duration(rule.get("after", "15m"), path=path, node=rule, what="after"),
                level=str(rule.get("level", "level-1")),
            )
        )
    return MonitoringConfig(
        environment=environment,
        path=path,
        services=services,
        probes=tuple(probes),
        slos=tuple(slos),
        maintenance=tuple(_maintenance(path, n, services) for n in mon.get("maintenance", []) or []),
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
    else the default environment."""
    configured = workspace.config.get("monitoring", {}).get("environments")
    if configured:
        return [str(e) for e in configured]
    return [workspace.default_environment]
