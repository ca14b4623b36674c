"""The shapes every part of security operations shares: severities, a check's result and a
finding candidate (what a check, a scanner or an import reports before the findings store gives
it an identity, a due date and a state)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Literal

from opsbook.errors import ValidationError

Severity = Literal["critical", "high", "medium", "low", "info"]
SEVERITIES: tuple[Severity, ...] = ("critical", "high", "medium", "low", "info")
#: Higher is worse; used for --fail-on and sorting.
SEVERITY_RANK: dict[str, int] = {s: len(SEVERITIES) - i for i, s in enumerate(SEVERITIES)}

Status = Literal["pass", "fail", "error", "skipped"]


def check_severity(value: str, *, field_name: str = "severity") -> Severity:
    low = value.strip().lower()
    aliases = {"moderate": "medium", "important": "high", "negligible": "low", "unknown": "info"}
    low = aliases.get(low, low)
    for s in SEVERITIES:
        if s == low:
            return s
    raise ValidationError(
        f"unknown severity {value!r}",
        field=field_name,
        hint=f"use one of: {', '.join(SEVERITIES)}",
    )


def at_least(severity: str, threshold: str) -> bool:
    return SEVERITY_RANK.get(severity, 0) >= SEVERITY_RANK.get(threshold, 0)


def fingerprint(*parts: str) -> str:
    """A stable identity: the same rule on the same subject is the same finding in every scan."""
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]


@dataclass(frozen=True)
class FindingInput:
    """One problem reported by a check, a scanner, an import or a detection.

    ``subject`` is what the problem is about (an account, a file, a certificate, a package), and
    with ``rule_id`` and ``environment`` it makes the fingerprint unless one is given (a SARIF
    result's partialFingerprints, say). ``detail`` must already be redacted: never a secret and
    never a full card number."""

    source: str  # check | pip-audit | import | detection
    rule_id: str
    title: str
    severity: Severity
    subject: str
    environment: str
    location: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    requirements: tuple[str, ...] = ()
    fingerprint: str | None = None

    @property
    def identity(self) -> str:
        return self.fingerprint or fingerprint(self.rule_id, self.environment, self.subject)

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "rule_id": self.rule_id,
            "title": self.title,
            "severity": self.severity,
            "subject": self.subject,
            "environment": self.environment,
            "location": self.location,
            "detail": self.detail,
            "requirements": list(self.requirements),
            "fingerprint": self.identity,
        }
