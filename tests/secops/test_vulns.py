"""pip-audit of what runs (issue 14): a recorded pip-audit JSON output (recorded-pip-audit.json,
with the known PYSEC-2018-28 in requests 2.19.1) becomes findings; a malformed one names the
field; and pip-audit itself, run for real on a pinned known-vulnerable requirement, either finds
it or, when its vulnerability service (PyPI/OSV) is unreachable as on the build machine, reports
an error naming the service: never a silent pass."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from opsbook.db import open_database
from opsbook.errors import ValidationError
from opsbook.secops import findings
from opsbook.secops.vulns import ScanResult, parse_pip_audit, run_pip_audit, scan, what_runs

DATA = Path(__file__).resolve().parent / "data"
RECORDED = DATA / "recorded-pip-audit.json"


def _recorded() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(RECORDED.read_text())
    return doc


def test_what_runs_is_the_interpreter_of_the_services() -> None:
    names = dict(what_runs())
    assert "opsbook" in names and "pip-audit" in names
    assert all(n == n.lower() and "_" not in n for n in names)


def test_recorded_output_becomes_findings() -> None:
    result = parse_pip_audit(_recorded(), environment="sandbox")
    assert (result.scanned, result.audited, result.error) == (3, 2, None)  # one skipped
    (f,) = result.findings
    assert (f.source, f.rule_id, f.subject) == ("pip-audit", "PYSEC-2018-28", "requests@2.19.1")
    assert f.severity == "high"  # pip-audit gives none: high until triaged
    assert f.detail["aliases"] == ["CVE-2018-18074", "GHSA-x84v-xcm2-53pg"]
    assert f.detail["fix_versions"] == ["2.20.0"] and "fixed in 2.20.0" in f.detail["text"]
    assert f.requirements == ("6.3.1", "6.3.3", "11.3.1")
    again = parse_pip_audit(_recorded(), environment="sandbox").findings[0]
    assert again.identity == f.identity  # the same vulnerability is the same finding


def test_scan_offline_reads_a_recorded_output() -> None:
    result = scan(environment="sandbox", offline=RECORDED)
    assert result.error is None and result.source == "pip-audit (recorded: recorded-pip-audit.json)"
    assert [f.rule_id for f in result.findings] == ["PYSEC-2018-28"]
    assert result.to_dict()["vulnerabilities"][0]["environment"] == "sandbox"


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        ({"deps": []}, "dependencies"),
        ({"dependencies": [{"version": "1"}]}, "dependencies[0].name"),
        ({"dependencies": [{"name": "a", "vulns": {}}]}, "dependencies[0].vulns"),
        (
            {"dependencies": [{"name": "a", "vulns": [{"fix_versions": []}]}]},
            "dependencies[0].vulns[0].id",
        ),
        (
            {"dependencies": [{"name": "a", "vulns": [{"id": "X", "fix_versions": "2.0"}]}]},
            "dependencies[0].vulns[0].fix_versions",
        ),
    ],
)
def test_malformed_recorded_output_names_the_field(doc: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as err:
        parse_pip_audit(doc, environment="sandbox", where="out.json")
    assert err.value.field == field
    assert err.value.render().startswith(f"out.json: {field}: ")


def test_offline_file_unreadable_or_not_json(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="cannot read") as err:
        scan(environment="sandbox", offline=tmp_path / "absent.json")
    assert err.value.field == "--offline"
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(ValidationError, match="is not JSON"):
        scan(environment="sandbox", offline=bad)


@pytest.fixture(scope="module")
def real_audit() -> ScanResult:
    """pip-audit run for real on one pinned, known-vulnerable requirement."""
    return run_pip_audit([("requests", "2.19.1")], environment="sandbox", timeout=120)


@pytest.mark.slow
def test_real_pip_audit_finds_the_vulnerability_or_says_it_could_not(
    real_audit: ScanResult,
) -> None:
    """Offline (this build machine), an error naming the service; online, the known finding.
    Never a silent pass either way."""
    assert real_audit.scanned == 1
    if real_audit.audited == 0:  # the vulnerability service did not answer
        assert real_audit.error is not None and not real_audit.findings
        assert "PyPI/OSV" in real_audit.error and "--offline" in real_audit.error
    else:
        assert real_audit.error is None
        ids = {f.rule_id for f in real_audit.findings}
        aliases = {a for f in real_audit.findings for a in f.detail["aliases"]}
        assert "PYSEC-2018-28" in ids or "CVE-2018-18074" in aliases


def test_a_later_scan_without_the_vulnerability_fixes_it(tmp_path: Path) -> None:
    db = open_database(f"sqlite:///{tmp_path / 'state.db'}")
    try:

        def ingest(doc: dict[str, Any]) -> dict[str, Any]:
            result = parse_pip_audit(doc, environment="sandbox")
            return findings.ingest(
                db,
                kind="pip-audit",
                environment="sandbox",
                source="pip-audit",
                inputs=result.findings,
                complete=True,
                actor="pytest",
            )

        assert ingest(_recorded())["new"] == 1
        assert ingest(_recorded())["still_open"] == 1  # the same vulnerability, not a new one
        upgraded = _recorded()
        upgraded["dependencies"][0].update(version="2.32.3", vulns=[])
        assert ingest(upgraded)["fixed"] == 1
        (f,) = findings.list_findings(db, state="fixed")
        assert f["rule_id"] == "PYSEC-2018-28" and f["source"] == "pip-audit"
    finally:
        db.close()
