"""``[security]`` in opsbook.toml: the remediation deadlines per severity (the SLA), who owns a
new finding, the longest a risk may be accepted for, the roles that approve acceptances and JIT
access, and the daily check.

Defaults are stricter than PCI DSS 6.3.3 (critical and high security patches within one month
of release): critical 7 days, high 14, medium 30, low 90, info 180::

    [security]
    sla = {critical = "7d", high = "14d", medium = "30d", low = "90d"}
    default_owner = "security"
    max_acceptance = "180d"
    approve_roles = ["security", "manager"]
    daily_check = true
    daily_environments = ["sandbox"]
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from opsbook.errors import Location, ValidationError
from opsbook.secops.model import SEVERITIES

if TYPE_CHECKING:
    from opsbook.workspace import Workspace

DAY = 86400.0
DEFAULT_SLA: dict[str, float] = {
    "critical": 7 * DAY,
    "high": 14 * DAY,
    "medium": 30 * DAY,
    "low": 90 * DAY,
    "info": 180 * DAY,
}


@dataclass(frozen=True)
class SecuritySettings:
    sla: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_SLA))
    default_owner: str = "security"
    max_acceptance: float = 180 * DAY
    approve_roles: tuple[str, ...] = ("security", "manager")
    daily_check: bool = True
    daily_environments: tuple[str, ...] = ()  # empty: the workspace's default environment
    #: the longest a just-in-time grant may last
    max_jit: float = 8 * 3600.0


def _where(ws: Workspace, key: str) -> Location:
    return ws.config_location("security", key)


def load_security_settings(ws: Workspace) -> SecuritySettings:
    """The ``[security]`` section; a wrong value is a ValidationError at its line."""
    from opsbook.durations import DURATION_HINT, duration_seconds  # noqa: PLC0415

    raw: Mapping[str, Any] = ws.config.get("security", {}) or {}
    if not isinstance(raw, Mapping):
        raise ValidationError("[security] must be a table", location=_where(ws, "security"))

    def dur(key: str, value: object) -> float:
        try:
            return duration_seconds(value)
        except ValueError as exc:
            raise ValidationError(
                f"[security] {key}: {exc}",
                location=_where(ws, key.split(".", maxsplit=1)[0]),
                hint=DURATION_HINT,
            ) from None

    sla = dict(DEFAULT_SLA)
    raw_sla = raw.get("sla", {})
    if not isinstance(raw_sla, Mapping):
        raise ValidationError(
            "[security] sla must map severities to durations",
            location=_where(ws, "sla"),
            hint='sla = {critical = "7d", high = "14d"}',
        )
    for sev, value in raw_sla.items():
        if sev not in SEVERITIES:
            raise ValidationError(
                f"[security] sla: unknown severity {sev!r}",
                location=_where(ws, "sla"),
                hint=f"use: {', '.join(SEVERITIES)}",
            )
        sla[sev] = dur(f"sla.{sev}", value)
    unknown = set(raw) - {
        "sla",
        "default_owner",
        "max_acceptance",
        "approve_roles",
        "daily_check",
        "daily_environments",
        "max_jit",
    }
    if unknown:
        key = sorted(unknown)[0]
        raise ValidationError(f"[security] unknown key {key!r}", location=_where(ws, key))
    roles = raw.get("approve_roles", SecuritySettings.approve_roles)
    envs = raw.get("daily_environments", ())
    if not isinstance(roles, list | tuple) or not isinstance(envs, list | tuple):
        raise ValidationError(
            "[security] approve_roles and daily_environments are lists",
            location=_where(
                ws, "approve_roles" if not isinstance(roles, list | tuple) else "daily_environments"
            ),
        )
    return SecuritySettings(
        sla=sla,
        default_owner=str(raw.get("default_owner", SecuritySettings.default_owner)),
        max_acceptance=dur("max_acceptance", raw.get("max_acceptance", "180d")),
        approve_roles=tuple(str(r) for r in roles),
        daily_check=bool(raw.get("daily_check", True)),
        daily_environments=tuple(str(e) for e in envs),
        max_jit=dur("max_jit", raw.get("max_jit", "8h")),
    )
