"""Scanner output made elsewhere, imported as findings (issue 14): SARIF 2.1.0 (any SAST or
image scanner that writes it), CycloneDX JSON with ``vulnerabilities`` (a VEX or an SBOM with
findings), and Trivy's JSON (``trivy image -f json``). The whole file is validated before
anything is stored; a malformed one is a ValidationError naming the JSON path of the bad field.

Severity: SARIF's ``properties.security-severity`` (CVSS: 9+ critical, 7+ high, 4+ medium,
else low), else the rule's or result's ``level`` (error high, warning medium, note low);
CycloneDX's highest ``ratings[].severity``; Trivy's ``Severity`` (UNKNOWN is info). The
fingerprint: SARIF's ``partialFingerprints`` when present, else rule + location; for
vulnerabilities, the id + package + version. Each import's scope is its tool and target, so a
later import of the same target fixes what it no longer reports. The target: SARIF's
``automationDetails.id`` (else ``versionControlProvenance[0].repositoryUri``, else the file's
name), CycloneDX's ``metadata.component.name``, Trivy's ``ArtifactName``."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from opsbook.errors import Location, ValidationError
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
    """``path`` is the JSON path of the bad field; ``where`` the file (rendered first)."""
    return ValidationError(
        f"{path}: {what}",
        field=path,
        location=Location(where),
        hint="fix the file (or the scanner run that wrote it) and import it again;"
        " nothing was stored",
    )


def _obj(where: str, path: str, value: Any, *, required: bool = False) -> dict[str, Any]:
    """``value`` as an object: absent is ``{}`` (unless ``required``), anything else is refused."""
    if value is None and not required:
        return {}
    if not isinstance(value, dict):
        raise _bad(where, path, "missing" if value is None else "must be an object")
    return value


def _list(where: str, path: str, value: Any) -> list[Any]:
    """``value`` as a list: absent is ``[]``, anything else is refused."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise _bad(where, path, "must be a list")
    return value


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
    tools: set[str] = set()
    targets: set[str] = set()  # automationDetails.id, else the repository, else the file name
    for i, raw_run in enumerate(runs):
        run = _obj(where, f"runs[{i}]", raw_run, required=True)
        tool_obj = _obj(where, f"runs[{i}].tool", run.get("tool"), required=True)
        driver = _obj(where, f"runs[{i}].tool.driver", tool_obj.get("driver"), required=True)
        if not driver.get("name"):
            raise _bad(where, f"runs[{i}].tool.driver.name", "missing")
        tool = str(driver["name"])
        tools.add(tool)
        auto = _obj(where, f"runs[{i}].automationDetails", run.get("automationDetails"))
        vcs = _list(
            where, f"runs[{i}].versionControlProvenance", run.get("versionControlProvenance")
        )
        repo = _obj(where, f"runs[{i}].versionControlProvenance[0]", vcs[0]) if vcs else {}
        if auto.get("id") or repo.get("repositoryUri"):
            targets.add(str(auto.get("id") or repo.get("repositoryUri")))
        rules: dict[str, dict[str, Any]] = {}
        for k, raw in enumerate(_list(where, f"runs[{i}].tool.driver.rules", driver.get("rules"))):
            at = f"runs[{i}].tool.driver.rules[{k}]"
            r = _obj(where, at, raw, required=True)
            for key in ("properties", "defaultConfiguration", "shortDescription"):
                _obj(where, f"{at}.{key}", r.get(key))
            rules[str(r.get("id"))] = r
        results = run.get("results")
        if not isinstance(results, list):
            raise _bad(where, f"runs[{i}].results", "must be a list")
        for j, res in enumerate(results):
            at = f"runs[{i}].results[{j}]"
            if not isinstance(res, dict):
                raise _bad(where, at, "must be an object")
            rule_id = res.get("ruleId") or _obj(where, f"{at}.rule", res.get("rule")).get("id")
            if not rule_id or not isinstance(rule_id, str):
                raise _bad(where, f"{at}.ruleId", "missing" if not rule_id else "must be a string")
            message = _obj(where, f"{at}.message", res.get("message"), required=True)
            text = message.get("text") or message.get("id")
            if not text:
                raise _bad(where, f"{at}.message.text", "missing")
            level = res.get("level")
            if level is not None and level not in _LEVEL:
                raise _bad(where, f"{at}.level", f"{level!r} is not one of {', '.join(_LEVEL)}")
            rule = rules.get(str(rule_id), {})
            severity = (
                _cvss(
                    _obj(where, f"{at}.properties", res.get("properties")).get("security-severity")
                )
                or _cvss((rule.get("properties") or {}).get("security-severity"))
                or _LEVEL.get(
                    str(level or (rule.get("defaultConfiguration") or {}).get("level")),
                    "medium",
                )
            )
            locations = _list(where, f"{at}.locations", res.get("locations"))
            first = _obj(where, f"{at}.locations[0]", locations[0]) if locations else {}
            loc = _obj(where, f"{at}.locations[0].physicalLocation", first.get("physicalLocation"))
            uri = _obj(
                where,
                f"{at}.locations[0].physicalLocation.artifactLocation",
                loc.get("artifactLocation"),
            ).get("uri")
            line = _obj(where, f"{at}.locations[0].physicalLocation.region", loc.get("region")).get(
                "startLine"
            )
            location = f"{uri}:{line}" if uri and line else uri
            partial = _obj(where, f"{at}.partialFingerprints", res.get("partialFingerprints"))
            fp = (
                fingerprint(
                    tool,
                    str(rule_id),
                    environment,
                    *(f"{k}={v}" for k, v in sorted(partial.items())),
                )
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
    target = "+".join(sorted(targets)) or Path(where).name
    return Imported("sarif", "+".join(sorted(tools)), target, out)


def _cyclonedx(doc: dict[str, Any], where: str, environment: str) -> Imported:
    comps = {
        str(c.get("bom-ref")): c
        for c in _list(where, "components", doc.get("components"))
        if isinstance(c, dict)
    }
    vulns = doc.get("vulnerabilities")
    if not isinstance(vulns, list):
        raise _bad(
            where, "vulnerabilities", "must be a list (a CycloneDX VEX or BOM with findings)"
        )
    meta = _obj(
        where, "metadata.component", _obj(where, "metadata", doc.get("metadata")).get("component")
    )
    target = str(meta.get("name") or Path(where).name)
    order = ("critical", "high", "medium", "low", "info", "none", "unknown")
    out: list[FindingInput] = []
    for i, v in enumerate(vulns):
        at = f"vulnerabilities[{i}]"
        if not isinstance(v, dict) or not v.get("id"):
            raise _bad(where, f"{at}.id", "missing")
        ratings = [
            str(_obj(where, f"{at}.ratings[{k}]", r, required=True).get("severity", "")).lower()
            for k, r in enumerate(_list(where, f"{at}.ratings", v.get("ratings")))
        ]
        ratings = [r for r in ratings if r in order] or ["unknown"]
        worst = min(ratings, key=order.index)
        severity = check_severity(
            worst if worst not in ("none",) else "info", field_name=f"{at}.ratings"
        )
        affects = _list(where, f"{at}.affects", v.get("affects"))
        if not affects:
            raise _bad(where, f"{at}.affects", "names no component")
        for k, a in enumerate(affects):
            ref = str(_obj(where, f"{at}.affects[{k}]", a, required=True).get("ref") or "")
            comp = comps.get(ref)
            if comp is None and not ref:
                raise _bad(where, f"{at}.affects[{k}].ref", "missing")
            subject = f"{comp.get('name') or ref}@{comp.get('version', '?')}" if comp else ref
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


_TRIVY: dict[str, Severity] = {
    "critical": "critical",
    "high": "high",
    "medium": "medium",
    "low": "low",
    "unknown": "info",
}


def _trivy(doc: dict[str, Any], where: str, environment: str) -> Imported:
    results = doc.get("Results")
    if not isinstance(results, list):
        raise _bad(where, "Results", "must be a list (trivy -f json)")
    target = str(doc.get("ArtifactName") or Path(where).name)
    out: list[FindingInput] = []
    for i, r in enumerate(results):
        if not isinstance(r, dict):
            raise _bad(where, f"Results[{i}]", "must be an object")
        for j, v in enumerate(
            _list(where, f"Results[{i}].Vulnerabilities", r.get("Vulnerabilities"))
        ):
            at = f"Results[{i}].Vulnerabilities[{j}]"
            for key in ("VulnerabilityID", "PkgName", "InstalledVersion"):
                if not isinstance(v, dict) or not v.get(key):
                    raise _bad(where, f"{at}.{key}", "missing")
            raw = str(v.get("Severity") or "UNKNOWN").lower()
            if raw not in _TRIVY:
                raise _bad(
                    where, f"{at}.Severity", f"{v.get('Severity')!r} is not a Trivy severity"
                )
            severity = _TRIVY[raw]
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
