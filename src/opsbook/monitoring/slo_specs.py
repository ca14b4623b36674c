"""SLO definitions: the ``slos:`` entries of environment files, Sloth ``prometheus/v1`` specs
and OpenSLO v1 ``kind: SLO`` documents, validated (objective strictly between 0 and 100)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from opsbook.errors import Location, ValidationError
from opsbook.monitoring.specs import Slo, duration_at, load_yaml_with_lines, location_of


def _objective(value: Any, *, path: Path, node: Any, name: str) -> float:
    try:
        objective = float(value)
    except (TypeError, ValueError) as exc:
        raise ValidationError(
            f"SLO {name!r}: objective {value!r} is not a number",
            location=location_of(path, node),
            hint="a percentage such as 99.9",
        ) from exc
    if not 0 < objective < 100:
        raise ValidationError(
            f"SLO {name!r}: objective must be above 0 and below 100 (got {objective:g})",
            location=location_of(path, node),
            hint="a percentage such as 99.9; 100 leaves no error budget at all",
        )
    return objective


def parse_slo(path: Path, node: Any, services: tuple[str, ...]) -> Slo:
    """One entry of ``slos:`` in an environment file."""
    if not isinstance(node, dict) or not node.get("name"):
        raise ValidationError(
            "an SLO must be a mapping with a name", location=location_of(path, node), hint="name: …"
        )
    name = str(node["name"])
    service = str(node.get("service", ""))
    if service not in services:
        raise ValidationError(
            f"SLO {name!r} names unknown service {service!r}",
            location=location_of(path, node),
            hint=f"use one of: {', '.join(services)}",
        )
    period = duration_at(node.get("period", "30d"), path=path, node=node, what="period")
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
    sli.events error_query/total_query) or an OpenSLO v1 ``kind: SLO`` document."""
    data = load_yaml_with_lines(path)
    if isinstance(data, dict) and data.get("kind") == "SLO":
        return (_openslo(path, data, services),)
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
            location=location_of(path, data),
            hint=f"use one of: {', '.join(services)}",
        )
    out = []
    for node in data["slos"]:
        name = str(node.get("name", "")) if isinstance(node, dict) else ""
        if not name:
            raise ValidationError(
                "every SLO needs a name", location=location_of(path, node), hint="name:"
            )
        raw = node.get("objective", node.get("target"))
        if "target" in node and "objective" not in node and isinstance(raw, float) and raw < 1:
            raw = raw * 100
        objective = _objective(raw, path=path, node=node, name=name)
        events = (node.get("sli") or {}).get("events") or {}
        error_query = events.get("error_query") or events.get("errorQuery")
        total_query = events.get("total_query") or events.get("totalQuery")
        if bool(error_query) != bool(total_query) or not all(
            isinstance(q, str) for q in (error_query, total_query) if q
        ):
            raise ValidationError(
                f"SLO {name!r}: sli.events needs both error_query and total_query (PromQL text)",
                location=location_of(path, node),
                hint='e.g. error_query: sum(rate(http_requests_total{code=~"5.."}[{{.window}}]))',
            )
        out.append(
            Slo(
                name=f"{service}-{name}",
                service=service,
                objective=objective,
                error_query=error_query,
                total_query=total_query,
            )
        )
    return tuple(out)


def _openslo(path: Path, data: Mapping[str, Any], services: tuple[str, ...] | None) -> Slo:
    """An OpenSLO v1 ``kind: SLO`` (first objective; ``target`` is a ratio, 0.999)."""
    spec = data.get("spec") or {}
    name = str((data.get("metadata") or {}).get("name", ""))
    service = str(spec.get("service", ""))
    if not name or (services is not None and service not in services):
        raise ValidationError(
            f"OpenSLO SLO {name!r} needs metadata.name and a known spec.service ({service!r})",
            location=location_of(path, data),
            hint=f"services: {', '.join(services or ())}",
        )
    objectives = spec.get("objectives") or [{}]
    target = objectives[0].get("target")
    objective = _objective(
        float(target) * 100 if isinstance(target, int | float) else target,
        path=path,
        node=objectives[0],
        name=name,
    )
    windows = spec.get("timeWindow") or [{}]
    duration = str(windows[0].get("duration", "30d"))
    days = (
        int(duration[:-1]) * (7 if duration.endswith("w") else 1)
        if duration[:-1].isdigit() and duration[-1] in "dw"
        else 30
    )
    return Slo(name=name, service=service, objective=objective, period_days=days)
