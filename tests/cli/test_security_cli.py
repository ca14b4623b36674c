"""`opsbook security` and `opsbook findings` as real processes: exit codes, JSON shapes, SARIF
2.1.0, bad input naming the field with exit 2 and nothing stored."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli.conftest import Run

SECRET = 'api_token = "s3cr3tValue99887766"\n'


def test_catalogue_lists_every_check_with_its_requirements(ob: Run) -> None:
    r = ob("security", "checks", "--json")
    assert r.returncode == 0, r.stderr
    checks = json.loads(r.stdout)["checks"]
    assert len(checks) >= 20
    assert all(c["requirements"] and c["fix"] and c["severity"] for c in checks)
    r = ob("security", "checks", "--requirement", "8.2.6", "--json")
    ids = {c["id"] for c in json.loads(r.stdout)["checks"]}
    assert "accounts.dormant" in ids and "tls.protocols" not in ids


def test_a_secret_in_a_workspace_file_fails_high_with_exit_1_and_sarif(
    ob: Run, ws_root: Path, tmp_path: Path
) -> None:
    with (ws_root / "opsbook.toml").open("a") as f:
        f.write(SECRET)
    lines = (ws_root / "opsbook.toml").read_text().splitlines()
    line = lines.index(SECRET.strip()) + 1
    sarif = tmp_path / "out.sarif"
    r = ob(
        "security",
        "check",
        "--only",
        "workspace.secrets-in-files",
        "--json",
        "--sarif",
        str(sarif),
    )
    assert r.returncode == 1, r.stderr
    d = json.loads(r.stdout)
    (res,) = d["results"]
    assert res["status"] == "fail" and res["failures"][0]["location"] == f"opsbook.toml:{line}"
    assert "s3cr3tValue" not in r.stdout and "s3cr3tValue" not in sarif.read_text()
    assert d["scan"]["new"] == 1 and d["scan"]["findings"]["new"] == ["FND-1"]
    doc = json.loads(sarif.read_text())
    assert doc["version"] == "2.1.0" and doc["$schema"].endswith("sarif-2.1.0.json")
    run = doc["runs"][0]
    rules = run["tool"]["driver"]["rules"]
    (result,) = run["results"]
    assert rules[result["ruleIndex"]]["id"] == result["ruleId"] == "workspace.secrets-in-files"
    assert "PCI-DSS-4.0.1:8.6.2" in rules[result["ruleIndex"]]["properties"]["tags"]
    loc = result["locations"][0]["physicalLocation"]
    assert loc == {"artifactLocation": {"uri": "opsbook.toml"}, "region": {"startLine": line}}
    assert result["level"] == "error" and result["partialFingerprints"]["opsbook/v1"]

    # the finding, then fixed by the next run once the secret is gone
    shown = json.loads(ob("findings", "show", "FND-1", "--json").stdout)
    assert shown["state"] == "open" and shown["requirements"] == ["8.3.2", "8.6.2"]
    (ws_root / "opsbook.toml").write_text("\n".join(lines[: line - 1]) + "\n")
    r = ob("security", "check", "--only", "workspace.secrets-in-files", "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["scan"]["fixed"] == 1
    fixed = json.loads(ob("findings", "list", "--state", "fixed", "--json").stdout)["findings"]
    assert [f["ref"] for f in fixed] == ["FND-1"]


def test_bad_input_names_the_field_and_stores_nothing(ob: Run, ws_root: Path) -> None:
    r = ob("security", "check", "--only", "tls.nonsense")
    assert r.returncode == 2 and "unknown check" in r.stderr and "Traceback" not in r.stderr
    r = ob("security", "check", "--only", "audit.chain", "--fail-on", "severe")
    assert r.returncode == 2 and "--fail-on" in r.stderr
    with (ws_root / "opsbook.toml").open("a") as f:
        f.write(SECRET)
    assert ob("security", "check", "--only", "workspace.secrets-in-files").returncode == 1
    r = ob("findings", "accept", "FND-1", "--until", "2027-01-31", "--as", "sam")
    assert r.returncode == 2 and "--reason" in r.stderr
    r = ob("findings", "assign", "FND-1", "--to", "olivia")
    assert r.returncode == 0
    r = ob(
        "findings", "accept", "FND-1", "--reason", "r", "--until", "2027-01-31", "--as", "olivia"
    )
    assert r.returncode == 2 and "owner" in r.stderr
    assert json.loads(ob("findings", "show", "FND-1", "--json").stdout)["acceptances"] == []
    r = ob("findings", "show", "FND-99")
    assert r.returncode == 2 and "no finding FND-99" in r.stderr
    r = ob("findings", "list", "--state", "closed")
    assert r.returncode == 2 and "--state" in r.stderr


def test_detect_lists_the_sigma_rules_and_refuses_a_bad_one(ob: Run, ws_root: Path) -> None:
    r = ob("security", "detect", "--rules", "--json")
    assert r.returncode == 0, r.stderr
    rules = json.loads(r.stdout)["rules"]
    assert len(rules) == 6 and any(x["correlation"] for x in rules)
    (ws_root / "security" / "detections").mkdir(parents=True)
    (ws_root / "security" / "detections" / "bad.yml").write_text("title: [unclosed\n")
    r = ob("security", "detect", "--rules")
    assert r.returncode == 2 and "bad.yml" in r.stderr and "Traceback" not in r.stderr
    r = ob("security", "detect", "--since", "yesterday")
    assert r.returncode == 2 and "--since" in r.stderr


def test_rotate_refuses_what_it_cannot_rotate(ob: Run) -> None:
    r = ob("security", "rotate", "api-keys")
    assert r.returncode == 2 and "certificate or db-credential" in r.stderr
    r = ob("security", "rotate", "certificate")  # the sandbox is not up in this workspace
    assert r.returncode == 2 and "Traceback" not in r.stderr
