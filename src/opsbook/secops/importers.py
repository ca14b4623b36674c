"""Scanner output made elsewhere, imported as findings (issue 14): SARIF 2.1.0 (any SAST or
image scanner that writes it), CycloneDX JSON with ``vulnerabilities`` (a VEX or an SBOM with
findings), and Trivy's JSON (``trivy image -f json``). The whole file is validated before
anything is stored; a malformed one is a ValidationError naming the JSON path of the bad field.

Severity: SARIF's ``properties.security-severity`` (CVSS: 9+ critical, 7+ high, 4+ medium,
else low), else the rule's or result's ``level`` (error high, warning medium, note low);
CycloneDX's highest ``ratings[].severity``; Trivy's ``Severity`` (UNKNOWN is info). The
fingerprint: SARIF's ``partialFingerprints`` when present, else rule + location; for
vulnerabilities, the id + package + version. Each import's scope is its tool and target, so a
later import of the same target fixes what it no longer reports."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from opsbook.errors import ValidationError
from opsbook.secops.model import FindingInput, Severity, check_severity, fingerprint

FORMATS = ("sarif", "cyclonedx", "trivy")


@dataclass
class Imported:
    format: str
    tool: str
    target: str
    findings: list[FindingInput]

    @property
    def source(self) -> str:
        return f"import:{self.tool}:{self.target}"


def _bad(where: str, path: str, what: str) -> ValidationError:
    return ValidationError(f"{where}: {path}: {what}", field=path)


def sniff(doc: Any) -> str | None:
    if isinstance(doc, dict):
        if "runs" in doc and str(doc.get("version", "")).startswith("2."):
            return "sarif"
        if doc.get("bomFormat") == "CycloneDX":
            return "cyclonedx"
        if "Results" in doc or doc.get("SchemaVersion"):
            return "trivy"
    return None


def _cvss(score: Any) -> Severity | None:
    try:
        value = float(score)
    except (TypeError, ValueError):
        return None
    return "critical" if value >= 9 else "high" if value >= 7 else "medium" if value >= 4 else "low"


_LEVEL: dict[str, Severity] = {"error": "high", "warning": "medium", "note": "low", "none": "info"}


def _sarif(doc: dict[str, Any], where: str, environment: str) -> Imported:
    if doc.get("version") != "2.1.0":
        raise _bad(where, "version", f"SARIF version {doc.get('version')!r}, expected 2.1.0")
    runs = doc.get("runs")
    if not isinstance(runs, list) or not runs:
        raise _bad(where, "runs", "must be a non-empty list")
    out: list[FindingInput] = []
    tools, targets = set(), set()
    for i, run in enumerate(runs):
        driver = (run.get("tool") or {}).get("driver") if isinstance(run, dict) else None
        if not isinstance(driver, dict) or not driver.get("name"):
            raise _bad(where, f"runs[{i}].tool.driver.name", "missing")
        tool = str(driver["name"])
        tools.add(tool)
        rules = {str(r.get("id")): r for r in driver.get("rules") or [] if isinstance(r, dict)}
        results = run.get("results")
        if not isinstance(results, list):
            raise _bad(where, f"runs[{i}].results", "must be a list")
        for j, res in enumerate(results):
            at = f"runs[{i}].results[{j}]"
            if not isinstance(res, dict):
                raise _bad(where, at, "must be an object")
            rule_id = res.get("ruleId") or (res.get("rule") or {}).get("id")
            if not rule_id:
                raise _bad(where, f"{at}.ruleId", "missing")
            text = (res.get("message") or {}).get("text")
            if not text:
                raise _bad(where, f"{at}.message.text", "missing")
            rule = rules.get(str(rule_id), {})
            severity = (
                _cvss((res.get("properties") or {}).get("security-severity"))
                or _cvss((rule.get("properties") or {}).get("security-severity"))
                or _LEVEL.get(
                    str(res.get("level") or (rule.get("defaultConfiguration") or {}).get("level")),
                    "medium",
                )
            )
            loc = ((res.get("locations") or [{}])[0] or {}).get("physicalLocation") or {}
            uri = (loc.get("artifactLocation") or {}).get("uri")
            line = (loc.get("region") or {}).get("startLine")
            location = f"{uri}:{line}" if uri and line else uri
            targets.add(str(uri).split("/")[0] if uri else "-")
            partial = res.get("partialFingerprints") or {}
            fp = (
                fingerprint(tool, str(rule_id), *(f"{k}={v}" for k, v in sorted(partial.items())))
                if partial
                else None
            )
            out.append(
                FindingInput(
                    source="import",
                    rule_id=str(rule_id),
                    title=str((rule.get("shortDescription") or {}).get("text") or rule_id),
                    severity=severity,
                    subject=f"{tool}: {rule_id} at {location or '-'}",
                    environment=environment,
                    location=location,
                    detail={"text": str(text)[:500], "tool": tool},
                    requirements=("6.3.1", "6.2.4"),
                    fingerprint=fp,
                )
            )
    return Imported("sarif", "+".join(sorted(tools)), Path(where).name, out)


def _cyclonedx(doc: dict[str, Any], where: str, environment: str) -> Imported:
    comps = {str(c.get("bom-ref")): c for c in doc.get("components") or [] if isinstance(c, dict)}
    vulns = doc.get("vulnerabilities")
    if not isinstance(vulns, list):
        raise _bad(
            where, "vulnerabilities", "must be a list (a CycloneDX VEX or BOM with findings)"
        )
    meta = (doc.get("metadata") or {}).get("component") or {}
    target = str(meta.get("name") or Path(where).name)
    order = ("critical", "high", "medium", "low", "info", "none", "unknown")
    out: list[FindingInput] = []
    for i, v in enumerate(vulns):
        at = f"vulnerabilities[{i}]"
        if not isinstance(v, dict) or not v.get("id"):
            raise _bad(where, f"{at}.id", "missing")
        ratings = [str(r.get("severity", "")).lower() for r in v.get("ratings") or []]
        ratings = [r for r in ratings if r in order] or ["unknown"]
        worst = min(ratings, key=order.index)
        severity = check_severity(
            worst if worst not in ("none",) else "info", field_name=f"{at}.ratings"
        )
        affects = v.get("affects") or []
        if not affects:
            raise _bad(where, f"{at}.affects", "names no component")
        for k, a in enumerate(affects):
            ref = str((a or {}).get("ref", ""))
            comp = comps.get(ref)
            if comp is None and not ref:
                raise _bad(where, f"{at}.affects[{k}].ref", "missing")
            subject = f"{comp['name']}@{comp.get('version', '?')}" if comp else ref
            out.append(
                FindingInput(
                    source="import",
                    rule_id=str(v["id"]),
                    title=f"{v['id']} in {subject}",
                    severity=severity,
                    subject=subject,
                    environment=environment,
                    location=subject,
                    detail={
                        "text": str(v.get("description") or v["id"])[:500],
                        "tool": "cyclonedx",
                    },
                    requirements=("6.3.1", "6.3.3"),
                )
            )
    return Imported("cyclonedx", "cyclonedx", target, out)


def _trivy(doc: dict[str, Any], where: str, environment: str) -> Imported:
    results = doc.get("Results")
    if not isinstance(results, list):
        raise _bad(where, "Results", "must be a list (trivy -f json)")
    target = str(doc.get("ArtifactName") or Path(where).name)
    out: list[FindingInput] = []
    for i, r in enumerate(results):
        if not isinstance(r, dict):
            raise _bad(where, f"Results[{i}]", "must be an object")
        for j, v in enumerate(r.get("Vulnerabilities") or []):
            at = f"Results[{i}].Vulnerabilities[{j}]"
            for key in ("VulnerabilityID", "PkgName", "InstalledVersion"):
                if not isinstance(v, dict) or not v.get(key):
                    raise _bad(where, f"{at}.{key}", "missing")
            raw = str(v.get("Severity") or "UNKNOWN").lower()
            severity = check_severity(
                "info" if raw == "unknown" else raw, field_name=f"{at}.Severity"
            )
            subject = f"{v['PkgName']}@{v['InstalledVersion']}"
            fixed = v.get("FixedVersion")
            out.append(
                FindingInput(
                    source="import",
                    rule_id=str(v["VulnerabilityID"]),
                    title=str(v.get("Title") or f"{v['VulnerabilityID']} in {subject}")[:200],
                    severity=severity,
                    subject=f"{target}: {subject}",
                    environment=environment,
                    location=f"{r.get('Target', target)}: {subject}",
                    detail={
                        "text": f"{v['VulnerabilityID']} in {subject}"
                        + (f", fixed in {fixed}" if fixed else ", no fix yet"),
                        "tool": "trivy",
                        "fixed_version": fixed,
                    },
                    requirements=("6.3.1", "6.3.3"),
                )
            )
    return Imported("trivy", "trivy", target, out)


def parse_file(path: Path, *, environment: str, fmt: str | None = None) -> Imported:
    if fmt is not None and fmt not in FORMATS:
        raise ValidationError(
            f"unknown format {fmt!r}", field="--format", hint=f"one of: {', '.join(FORMATS)}"
        )
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValidationError(f"cannot read {path}: {exc.strerror}", field="FILE") from None
    except ValueError as exc:
        raise ValidationError(f"{path} is not JSON: {exc}", field="FILE") from None
    kind = fmt or sniff(doc)
    if kind is None:
        raise ValidationError(
            f"{path}: neither SARIF 2.1.0, CycloneDX nor Trivy JSON",
            field="--format",
            hint="say which with --format sarif|cyclonedx|trivy",
        )
    if not isinstance(doc, dict):
        raise _bad(str(path), "$", "must be a JSON object")
    parse = {"sarif": _sarif, "cyclonedx": _cyclonedx, "trivy": _trivy}[kind]
    return parse(doc, str(path), environment)
