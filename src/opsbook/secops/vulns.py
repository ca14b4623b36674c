"""Vulnerability scanning of what runs (issue 14, PCI DSS 6.3.1, 6.3.3, 11.3.1): the Python
distributions the sandbox services run on, audited with pip-audit (a real scanner; it asks the
PyPI/OSV vulnerability service), and an SBOM of them in CycloneDX (:mod:`opsbook.secops.sbom`).

pip-audit needs its vulnerability service: when it cannot reach it, the scan says so as an
error (never a silent pass). ``offline`` takes a recorded pip-audit JSON output instead (how
an air-gapped site feeds a scan run elsewhere). pip-audit's JSON carries no severity: a
vulnerability is treated as high until triaged (documented)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from importlib.metadata import distributions
from pathlib import Path
from typing import Any

from opsbook.errors import Location, ValidationError
from opsbook.secops.model import FindingInput

REQUIREMENTS = ("6.3.1", "6.3.3", "11.3.1")
TIMEOUT = 120.0


@dataclass
class ScanResult:
    scanned: int
    audited: int
    findings: list[FindingInput] = field(default_factory=list)
    error: str | None = None
    source: str = "pip-audit"

    def to_dict(self) -> dict[str, Any]:
        return {
            "scanner": self.source,
            "packages": self.scanned,
            "audited": self.audited,
            "vulnerabilities": [f.to_dict() for f in self.findings],
            "error": self.error,
        }


def what_runs() -> list[tuple[str, str]]:
    """(name, version) of every distribution in the interpreter the sandbox services run on, the
    names normalised as PyPI does (PEP 503), so ``pip_audit`` and ``pip-audit`` are one."""
    seen: dict[str, str] = {}
    for d in distributions():
        name = d.metadata["Name"]
        if name:
            seen.setdefault(re.sub(r"[-_.]+", "-", str(name)).lower(), d.version)  # PEP 503
    return sorted(seen.items())


def _bad(where: str, path: str, what: str) -> ValidationError:
    return ValidationError(
        f"{path}: {what}",
        field=path,
        location=Location(where),
        hint="a pip-audit -f json output is expected; nothing was stored",
    )


def parse_pip_audit(doc: Any, *, environment: str, where: str = "pip-audit") -> ScanResult:
    """pip-audit's ``-f json`` output → findings; a malformed document names the field."""
    if not isinstance(doc, dict) or not isinstance(doc.get("dependencies"), list):
        raise _bad(where, "dependencies", "missing: not pip-audit JSON output")
    out: list[FindingInput] = []
    audited = 0
    for i, dep in enumerate(doc["dependencies"]):
        if not isinstance(dep, dict) or not dep.get("name"):
            raise _bad(where, f"dependencies[{i}].name", "missing")
        if dep.get("skip_reason"):
            continue
        audited += 1
        vulns = dep["vulns"] if dep.get("vulns") is not None else []
        if not isinstance(vulns, list):
            raise _bad(where, f"dependencies[{i}].vulns", "must be a list")
        for j, v in enumerate(vulns):
            if not isinstance(v, dict) or not v.get("id"):
                raise _bad(where, f"dependencies[{i}].vulns[{j}].id", "missing")
            for key in ("fix_versions", "aliases"):
                if not isinstance(v[key] if v.get(key) is not None else [], list):
                    raise _bad(where, f"dependencies[{i}].vulns[{j}].{key}", "must be a list")
            subject = f"{dep['name']}@{dep.get('version', '?')}"
            out.append(
                FindingInput(
                    source="pip-audit",
                    rule_id=str(v["id"]),
                    title=f"{v['id']} in {subject}",
                    severity="high",
                    subject=subject,
                    environment=environment,
                    location=subject,
                    detail={
                        "text": f"{v['id']} affects {subject}"
                        + (
                            f"; fixed in {', '.join(v['fix_versions'])}"
                            if v.get("fix_versions")
                            else ""
                        ),
                        "aliases": v.get("aliases") or [],
                        "fix_versions": v.get("fix_versions") or [],
                        "description": str(v.get("description") or "")[:500],
                        "severity_note": "pip-audit gives no severity: high until triaged",
                    },
                    requirements=REQUIREMENTS,
                )
            )
    return ScanResult(scanned=len(doc["dependencies"]), audited=audited, findings=out)


def run_pip_audit(
    packages: list[tuple[str, str]], *, environment: str, timeout: float = TIMEOUT
) -> ScanResult:
    """Audit pinned ``packages`` with pip-audit (no shell; a requirements file it reads)."""
    with tempfile.TemporaryDirectory(prefix="opsbook-pip-audit-") as tmp:
        req = Path(tmp) / "requirements.txt"
        req.write_text("".join(f"{n}=={v}\n" for n, v in packages), encoding="utf-8")
        cmd = [
            sys.executable,
            "-m",
            "pip_audit",
            "-r",
            str(req),
            "--no-deps",
            "--disable-pip",
            "-f",
            "json",
            "--progress-spinner",
            "off",
        ]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            return ScanResult(
                len(packages), 0, error=f"pip-audit did not finish in {timeout:.0f} s"
            )
        except OSError as exc:
            return ScanResult(len(packages), 0, error=f"pip-audit could not start: {exc}")
    try:
        doc = json.loads(proc.stdout)
    except ValueError:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        return ScanResult(len(packages), 0, error=f"pip-audit failed: {tail[0]}")
    result = parse_pip_audit(doc, environment=environment)
    if result.audited == 0 and packages:
        result.error = (
            f"none of {len(packages)} packages could be audited: the vulnerability service"
            " (PyPI/OSV) did not answer for them; run with --offline FILE (a pip-audit JSON"
            " output made where it is reachable)"
        )
    elif result.audited < len(packages):
        result.error = None  # partial coverage is reported in the numbers
    return result


def scan(*, environment: str, offline: Path | None = None, timeout: float = TIMEOUT) -> ScanResult:
    packages = what_runs()
    if offline is not None:
        try:
            doc = json.loads(offline.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ValidationError(
                f"cannot read {offline}: {exc.strerror}", field="--offline"
            ) from None
        except ValueError as exc:
            raise ValidationError(f"{offline} is not JSON: {exc}", field="--offline") from None
        result = parse_pip_audit(doc, environment=environment, where=str(offline))
        result.source = f"pip-audit (recorded: {offline.name})"
        return result
    return run_pip_audit(packages, environment=environment, timeout=timeout)
