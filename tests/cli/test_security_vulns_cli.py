"""`opsbook security scan|sbom|import` as real processes: pip-audit for real (its vulnerability
service is not reachable on this machine, so the scan says it could not audit: exit 1, not a
silent pass) and with a recorded pip-audit output; a CycloneDX SBOM of what runs; SARIF,
CycloneDX and Trivy imports as findings that keep their identity across imports; malformed
files refused naming the field with nothing stored."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli.conftest import Run

DATA = Path(__file__).resolve().parents[1] / "secops" / "data"


def _findings(ob: Run, state: str = "open") -> list[dict]:  # type: ignore[type-arg]
    r = ob("findings", "list", "--state", state, "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)["findings"]  # type: ignore[no-any-return]


def test_scan_with_a_recorded_pip_audit_output(ob: Run) -> None:
    r = ob("security", "scan", "--offline", str(DATA / "recorded-pip-audit.json"), "--json")
    assert r.returncode == 1, r.stderr  # it found something
    d = json.loads(r.stdout)
    assert d["packages"] == 3 and d["audited"] == 2
    (v,) = d["vulnerabilities"]
    assert v["rule_id"] == "PYSEC-2018-28" and v["subject"] == "requests@2.19.1"
    assert d["scan"]["new"] == 1
    (f,) = _findings(ob)
    assert f["source"] == "pip-audit" and f["requirements"] == ["6.3.1", "6.3.3", "11.3.1"]
    assert "fixed in 2.20.0" in f["detail"]["text"]


def test_scan_for_real_never_passes_silently(ob: Run) -> None:
    r = ob("security", "scan", "--json", timeout=180)
    d = json.loads(r.stdout)
    assert d["packages"] > 20
    if d["audited"] == 0:  # no vulnerability service here: an error, and nothing recorded
        assert r.returncode == 1
        assert d["error"].startswith(f"none of {d['packages']} packages could be audited")
        assert d["scan"] is None
    else:  # reachable: a real audit of what runs
        assert d["error"] is None and d["scan"] is not None


def test_sbom_is_cyclonedx_of_what_runs(ob: Run, tmp_path: Path) -> None:
    out = tmp_path / "sbom.json"
    r = ob("security", "sbom", "--out", str(out), "--json")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["file"] == str(out) and summary["components"] > 20
    doc = json.loads(out.read_text())
    assert doc["bomFormat"] == "CycloneDX" and doc["specVersion"] == "1.5"
    purls = {c.get("purl") for c in doc["components"]}
    assert any(p and p.startswith("pkg:pypi/opsbook@") for p in purls)
    assert any(p and p.startswith("pkg:pypi/sslyze@") for p in purls)


def test_imports_keep_identity_and_fix_what_a_later_import_no_longer_reports(
    ob: Run, tmp_path: Path
) -> None:
    for name, fmt, count in (
        ("recorded-sarif.json", "sarif", 2),
        ("recorded-trivy.json", "trivy", 3),
        ("recorded-cyclonedx-vex.json", "cyclonedx", 1),
    ):
        r = ob("security", "import", str(DATA / name), "--json")
        assert r.returncode == 0, r.stderr
        d = json.loads(r.stdout)
        assert d["format"] == fmt and d["findings"] == count and d["scan"]["new"] == count
    open_ = _findings(ob)
    sev = {f["rule_id"]: f["severity"] for f in open_}
    assert sev["python.lang.security.audit.subprocess-shell-true"] == "high"  # CVSS 8.1
    assert sev["CVE-2023-45853"] == "critical" and sev["CVE-2024-22195"] == "medium"
    shell = next(f for f in open_ if f["rule_id"].endswith("subprocess-shell-true"))
    assert shell["location"] == "payment/gateway.py:42"
    # the image is rebuilt: zlib fixed, the rest still there
    trivy = json.loads((DATA / "recorded-trivy.json").read_text())
    trivy["Results"][0]["Vulnerabilities"] = trivy["Results"][0]["Vulnerabilities"][:1]
    again = tmp_path / "trivy-rebuilt.json"
    again.write_text(json.dumps(trivy))
    d = json.loads(ob("security", "import", str(again), "--json").stdout)
    assert d["scan"]["fixed"] == 1 and d["scan"]["still_open"] == 2 and d["scan"]["new"] == 0
    assert [f["rule_id"] for f in _findings(ob, "fixed")] == ["CVE-2023-45853"]


def test_malformed_files_name_the_field_and_store_nothing(ob: Run, tmp_path: Path) -> None:
    sarif = json.loads((DATA / "recorded-sarif.json").read_text())
    del sarif["runs"][0]["results"][1]["ruleId"]
    bad = tmp_path / "bad.sarif"
    bad.write_text(json.dumps(sarif))
    r = ob("security", "import", str(bad))
    assert r.returncode == 2 and "runs[0].results[1].ruleId" in r.stderr
    cdx = tmp_path / "bad-cdx.json"
    cdx.write_text(json.dumps({"bomFormat": "CycloneDX", "vulnerabilities": [{"ratings": []}]}))
    r = ob("security", "import", str(cdx))
    assert r.returncode == 2 and "vulnerabilities[0].id" in r.stderr
    other = tmp_path / "other.json"
    other.write_text('{"hello": 1}')
    r = ob("security", "import", str(other))
    assert r.returncode == 2 and "--format" in r.stderr
    r = ob("security", "import", str(other), "--format", "nessus")
    assert r.returncode == 2 and "unknown format" in r.stderr
    assert _findings(ob) == [] and "Traceback" not in r.stderr
