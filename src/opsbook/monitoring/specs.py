"""What monitoring configuration is parsed into (:class:`Probe`, :class:`Slo`) and the helpers
every parser of ``environments/NAME.yaml`` shares (YAML with lines, locations, durations).
Below :mod:`.config`, :mod:`.probe_specs` and :mod:`.slo_specs`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from opsbook.durations import DURATION_HINT, duration_seconds
from opsbook.errors import Location, ValidationError

PROBE_KINDS = ("http", "tcp", "tls", "sql", "promql")
DEFAULT_INTERVAL = 30.0
DEFAULT_TIMEOUT = 5.0
SEVERITIES = ("page", "ticket", "info")


class LineDict(dict[str, Any]):
    line: int = 0


def load_yaml_with_lines(path: Path) -> Any:
    """Parse YAML keeping the 1-based line of every mapping (``LineDict.line``). Invalid
    YAML, anchors and aliases, deep or huge YAML raise a ValidationError at file:line:col."""
    from opsbook import yamlsafe  # noqa: PLC0415 - refuses YAML aliases (issue 16 §3)

    def construct(data: dict[Any, Any], line: int) -> LineDict:
        out = LineDict({str(k): v for k, v in data.items()})
        out.line = line
        return out

    loaded = yamlsafe.load_file(
        path, what="environment file", kind="environment files", mapping=construct
    )
    return loaded.data


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


def location_of(path: Path, node: Any) -> Location:
    return Location(str(path), getattr(node, "line", 0))


def duration_at(value: Any, *, path: Path, node: Any, what: str) -> float:
    try:
        seconds = duration_seconds(value)
    except ValueError as exc:
        raise ValidationError(
            f"{what}: {value!r} is not a duration",
            location=location_of(path, node),
            hint=DURATION_HINT,
        ) from exc
    if seconds <= 0:
        raise ValidationError(
            f"{what} must be positive", location=location_of(path, node), hint="e.g. 30s"
        )
    return seconds
