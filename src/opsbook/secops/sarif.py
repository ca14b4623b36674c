"""SARIF 2.1.0 output of a security check run: one run whose tool's rules are the catalogue
(with the PCI DSS 4.0.1 requirements as tags and properties) and one result per failure, with a
physical location where the failure points at a file and line."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from opsbook.secops.catalogue import CATALOGUE

if TYPE_CHECKING:
    from opsbook.secops.checks import CheckRun

SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
_LEVEL = {"critical": "error", "high": "error", "medium": "warning", "low": "note", "info": "note"}
_FILE_LINE = re.compile(r"^(?P<path>[^\s:]+):(?P<line>\d+)$")


def _location(where: str | None) -> list[dict[str, Any]]:
    if not where:
        return []
    m = _FILE_LINE.match(where)
    if m:
        return [
            {
                "physicalLocation": {
                    "artifactLocation": {"uri": m["path"]},
                    "region": {"startLine": int(m["line"])},
                }
            }
        ]
    if "://" not in where and " " not in where:
        return [{"physicalLocation": {"artifactLocation": {"uri": where}}}]
    return [{"logicalLocations": [{"fullyQualifiedName": where}]}]


def to_sarif(run: CheckRun, *, version: str) -> dict[str, Any]:
    from opsbook.secops.model import fingerprint  # noqa: PLC0415

    ids = list(CATALOGUE)
    rules = [
        {
            "id": c.id,
            "name": c.id.replace(".", "-"),
            "shortDescription": {"text": c.title},
            "fullDescription": {"text": c.checks},
            "help": {"text": c.fix},
            "defaultConfiguration": {"level": _LEVEL[c.severity]},
            "properties": {
                "tags": ["security", *(f"PCI-DSS-4.0.1:{r}" for r in c.requirements)],
                "severity": c.severity,
                "pci_dss": list(c.requirements),
            },
        }
        for c in CATALOGUE.values()
    ]
    results = []
    for r in run.results:
        for f in r.outcome.failures:
            severity = f.severity or r.spec.severity
            results.append(
                {
                    "ruleId": r.spec.id,
                    "ruleIndex": ids.index(r.spec.id),
                    "level": _LEVEL[severity],
                    "message": {"text": f.text},
                    "locations": _location(f.location),
                    "partialFingerprints": {
                        "opsbook/v1": fingerprint(r.spec.id, run.environment, f.subject)
                    },
                    "properties": {"severity": severity, "subject": f.subject},
                }
            )
    notifications = [
        {
            "descriptor": {"id": r.spec.id},
            "level": "error",
            "message": {"text": f"{r.spec.id} did not run: {r.outcome.error}"},
        }
        for r in run.results
        if r.outcome.status == "error"
    ]
    return {
        "$schema": SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "opsbook security check",
                        "version": version,
                        "informationUri": "https://example.invalid/opsbook/docs/security.md",
                        "rules": rules,
                    }
                },
                "invocations": [
                    {
                        "executionSuccessful": not notifications,
                        "toolExecutionNotifications": notifications,
                        "startTimeUtc": run.started_at,
                    }
                ],
                "properties": {"environment": run.environment},
                "results": results,
            }
        ],
    }
