"""Imports of scanner output made elsewhere (issue 14): recorded SARIF 2.1.0, CycloneDX (VEX) and
Trivy JSON samples become findings with the documented severity mapping and a stable identity;
malformed files are refused with the file and the JSON path of the bad field."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from opsbook.db import open_database
from opsbook.errors import ValidationError
from opsbook.secops import findings
from opsbook.secops.importers import parse_file, sniff

DATA = Path(__file__).resolve().parent / "data"


def _load(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((DATA / name).read_text())
    return doc


def _write(tmp_path: Path, doc: Any, name: str = "sample.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(doc))
    return path


def test_formats_are_sniffed() -> None:
    assert sniff(_load("recorded-sarif.json")) == "sarif"
    assert sniff(_load("recorded-cyclonedx-vex.json")) == "cyclonedx"
    assert sniff(_load("recorded-trivy.json")) == "trivy"
    assert sniff({"hello": 1}) is None and sniff([1, 2]) is None


def test_sarif_severity_location_and_fingerprint() -> None:
    got = parse_file(DATA / "recorded-sarif.json", environment="sandbox")
    assert got.format == "sarif" and got.tool == "semgrep"
    assert got.source.startswith("import:semgrep:")
    by_rule = {f.rule_id: f for f in got.findings}
    shell = by_rule["python.lang.security.audit.subprocess-shell-true"]
    assert shell.severity == "high"  # security-severity 8.1 (CVSS) wins over level
    assert shell.location == "payment/gateway.py:42"
    assert shell.title == "subprocess call with shell=True"
    assert shell.source == "import" and shell.environment == "sandbox"
    assert by_rule["python.lang.best-practice.open-never-closed"].severity == "low"  # note


def test_sarif_identity_follows_partial_fingerprints_else_rule_and_location(
    tmp_path: Path,
) -> None:
    doc = _load("recorded-sarif.json")
    before = parse_file(_write(tmp_path, doc, "a.json"), environment="sandbox").findings
    moved = copy.deepcopy(doc)
    for res in moved["runs"][0]["results"]:  # the code moved down ten lines
        res["locations"][0]["physicalLocation"]["region"]["startLine"] += 10
    after = parse_file(_write(tmp_path, moved, "a.json"), environment="sandbox").findings
    assert before[0].fingerprint is not None  # partialFingerprints: same finding
    assert before[0].identity == after[0].identity
    assert before[1].fingerprint is None  # no partialFingerprints: rule + location
    assert before[1].identity != after[1].identity
    other_env = parse_file(_write(tmp_path, doc, "a.json"), environment="staging").findings
    assert other_env[1].identity != before[1].identity
    assert other_env[0].identity != before[0].identity  # partialFingerprints too


@pytest.mark.parametrize(
    ("level", "score", "expected"),
    [
        ("error", None, "high"),
        ("warning", None, "medium"),
        ("note", None, "low"),
        ("none", None, "info"),
        ("note", "9.8", "critical"),
        ("error", "6.5", "medium"),
        ("error", "2.0", "low"),
    ],
)
def test_sarif_severity_mapping(
    tmp_path: Path, level: str, score: str | None, expected: str
) -> None:
    doc = _load("recorded-sarif.json")
    res = doc["runs"][0]["results"][1]
    res["level"] = level
    if score is not None:
        res["properties"] = {"security-severity": score}
    got = parse_file(_write(tmp_path, doc), environment="sandbox").findings[1]
    assert got.severity == expected


def test_cyclonedx_vex() -> None:
    got = parse_file(DATA / "recorded-cyclonedx-vex.json", environment="sandbox")
    assert (got.format, got.target) == ("cyclonedx", "notification-service")
    (f,) = got.findings
    assert f.rule_id == "CVE-2024-22195" and f.subject == "jinja2@3.1.2"
    assert f.severity == "medium"


def test_cyclonedx_worst_rating_wins(tmp_path: Path) -> None:
    doc = _load("recorded-cyclonedx-vex.json")
    doc["vulnerabilities"][0]["ratings"].append({"severity": "critical", "method": "other"})
    (f,) = parse_file(_write(tmp_path, doc), environment="sandbox").findings
    assert f.severity == "critical"
    doc["vulnerabilities"][0]["ratings"] = []
    (f,) = parse_file(_write(tmp_path, doc), environment="sandbox").findings
    assert f.severity == "info"  # unrated


def test_trivy() -> None:
    got = parse_file(DATA / "recorded-trivy.json", environment="sandbox")
    assert got.target == "bankingplatformacr.azurecr.io/payment:1.4.2"
    sev = {f.rule_id: f.severity for f in got.findings}
    assert sev == {
        "CVE-2024-2961": "high",
        "CVE-2023-45853": "critical",
        "CVE-2024-35195": "medium",
    }
    zlib = next(f for f in got.findings if f.rule_id == "CVE-2023-45853")
    assert zlib.detail["text"].endswith("no fix yet")
    libc = next(f for f in got.findings if f.rule_id == "CVE-2024-2961")
    assert libc.detail["fixed_version"] == "2.36-9+deb12u7"


Breaker = Callable[[dict[str, Any]], None]


def _set(path: list[Any], value: Any) -> Breaker:
    def f(doc: dict[str, Any]) -> None:
        node: Any = doc
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return f


def _del(path: list[Any]) -> Breaker:
    def f(doc: dict[str, Any]) -> None:
        node: Any = doc
        for key in path[:-1]:
            node = node[key]
        del node[path[-1]]

    return f


MALFORMED: list[tuple[str, Breaker, str]] = [
    ("recorded-sarif.json", _del(["runs", 0, "results", 1, "ruleId"]), "runs[0].results[1].ruleId"),
    ("recorded-sarif.json", _set(["version"], "2.0.0"), "version"),
    ("recorded-sarif.json", _set(["runs"], []), "runs"),
    ("recorded-sarif.json", _set(["runs", 0], "semgrep"), "runs[0]"),
    (
        "recorded-sarif.json",
        _del(["runs", 0, "tool", "driver", "name"]),
        "runs[0].tool.driver.name",
    ),
    ("recorded-sarif.json", _set(["runs", 0, "results"], {}), "runs[0].results"),
    (
        "recorded-sarif.json",
        _set(["runs", 0, "results", 0, "message"], "x"),
        "runs[0].results[0].message",
    ),
    (
        "recorded-sarif.json",
        _set(["runs", 0, "results", 1, "message"], {}),
        "runs[0].results[1].message.text",
    ),
    (
        "recorded-sarif.json",
        _set(["runs", 0, "results", 0, "level"], "fatal"),
        "runs[0].results[0].level",
    ),
    (
        "recorded-sarif.json",
        _set(["runs", 0, "results", 0, "locations"], {}),
        "runs[0].results[0].locations",
    ),
    (
        "recorded-sarif.json",
        _set(["runs", 0, "results", 0, "partialFingerprints"], "ab"),
        "runs[0].results[0].partialFingerprints",
    ),
    (
        "recorded-sarif.json",
        _set(["runs", 0, "tool", "driver", "rules", 0], 7),
        "runs[0].tool.driver.rules[0]",
    ),
    ("recorded-cyclonedx-vex.json", _del(["vulnerabilities", 0, "id"]), "vulnerabilities[0].id"),
    ("recorded-cyclonedx-vex.json", _del(["vulnerabilities"]), "vulnerabilities"),
    (
        "recorded-cyclonedx-vex.json",
        _set(["vulnerabilities", 0, "affects"], []),
        "vulnerabilities[0].affects",
    ),
    (
        "recorded-cyclonedx-vex.json",
        _set(["vulnerabilities", 0, "affects", 0], "jinja2"),
        "vulnerabilities[0].affects[0]",
    ),
    (
        "recorded-cyclonedx-vex.json",
        _set(["vulnerabilities", 0, "ratings", 0], "high"),
        "vulnerabilities[0].ratings[0]",
    ),
    ("recorded-cyclonedx-vex.json", _set(["components"], {}), "components"),
    ("recorded-trivy.json", _set(["Results"], {}), "Results"),
    ("recorded-trivy.json", _set(["Results", 1], []), "Results[1]"),
    (
        "recorded-trivy.json",
        _del(["Results", 0, "Vulnerabilities", 1, "PkgName"]),
        "Results[0].Vulnerabilities[1].PkgName",
    ),
    (
        "recorded-trivy.json",
        _set(["Results", 0, "Vulnerabilities", 0, "Severity"], "SEVERE"),
        "Results[0].Vulnerabilities[0].Severity",
    ),
    (
        "recorded-trivy.json",
        _set(["Results", 1, "Vulnerabilities"], "none"),
        "Results[1].Vulnerabilities",
    ),
]


@pytest.mark.parametrize(("sample", "breaker", "field"), MALFORMED, ids=[m[2] for m in MALFORMED])
def test_malformed_files_name_the_file_and_the_json_path(
    tmp_path: Path, sample: str, breaker: Breaker, field: str
) -> None:
    doc = _load(sample)
    breaker(doc)
    path = _write(tmp_path, doc, "bad-" + sample)
    with pytest.raises(ValidationError) as err:
        parse_file(path, environment="sandbox")
    assert err.value.field == field
    assert err.value.location is not None and err.value.location.path == str(path)
    assert err.value.render().startswith(f"{path}: {field}: ")


def test_not_json_unknown_and_unreadable(tmp_path: Path) -> None:
    bad = tmp_path / "broken.json"
    bad.write_text('{"runs": [')
    with pytest.raises(ValidationError, match="is not JSON"):
        parse_file(bad, environment="sandbox")
    with pytest.raises(ValidationError, match="neither SARIF") as err:
        parse_file(_write(tmp_path, {"hello": 1}), environment="sandbox")
    assert err.value.field == "--format"
    with pytest.raises(ValidationError, match="unknown format"):
        parse_file(DATA / "recorded-trivy.json", environment="sandbox", fmt="nessus")
    with pytest.raises(ValidationError, match="cannot read"):
        parse_file(tmp_path / "absent.json", environment="sandbox")
    with pytest.raises(ValidationError) as err:
        parse_file(_write(tmp_path, [1]), environment="sandbox", fmt="sarif")
    assert err.value.field == "$"
    with pytest.raises(ValidationError) as err:  # the wrong --format names what is missing
        parse_file(DATA / "recorded-trivy.json", environment="sandbox", fmt="sarif")
    assert err.value.field == "version"


def test_sarif_target_is_the_analysis_else_the_repository_else_the_file(tmp_path: Path) -> None:
    doc = _load("recorded-sarif.json")
    assert parse_file(_write(tmp_path, doc, "ci.sarif"), environment="sandbox").target == (
        "ci.sarif"
    )
    doc["runs"][0]["versionControlProvenance"] = [
        {"repositoryUri": "https://git.example/banking/payment"}
    ]
    got = parse_file(_write(tmp_path, doc, "ci.sarif"), environment="sandbox")
    assert got.target == "https://git.example/banking/payment"
    doc["runs"][0]["automationDetails"] = {"id": "semgrep/payment/"}
    got = parse_file(_write(tmp_path, doc, "other-name.sarif"), environment="sandbox")
    assert got.source == "import:semgrep:semgrep/payment/"  # the file's name does not matter


def test_an_import_is_complete_for_its_tool_and_target_only(tmp_path: Path) -> None:
    db = open_database(f"sqlite:///{tmp_path / 'state.db'}")

    def store(doc: dict[str, Any], name: str) -> dict[str, Any]:
        got = parse_file(_write(tmp_path, doc, name), environment="sandbox")
        return findings.ingest(  # as `opsbook security import` does
            db,
            kind="import",
            environment="sandbox",
            source=got.source,
            inputs=[replace(f, source=got.source) for f in got.findings],
            complete=True,
            actor="pytest",
        )

    try:
        payment = _load("recorded-trivy.json")
        assert store(payment, "payment.json")["new"] == 3
        ledger = copy.deepcopy(payment)
        ledger["ArtifactName"] = "bankingplatformacr.azurecr.io/ledger:2.0.0"
        ledger["Results"] = ledger["Results"][1:]
        assert store(ledger, "ledger.json")["new"] == 1  # another image: another scope
        assert store(ledger, "ledger.json")["fixed"] == 0
        rebuilt = copy.deepcopy(payment)
        rebuilt["Results"][0]["Vulnerabilities"] = []  # the base image was patched
        assert store(rebuilt, "payment-rebuilt.json")["fixed"] == 2
        fixed = {f["rule_id"] for f in findings.list_findings(db, state="fixed")}
        assert fixed == {"CVE-2024-2961", "CVE-2023-45853"}
        still = findings.list_findings(db, state="open")
        assert len(still) == 2  # requests in both images
    finally:
        db.close()
