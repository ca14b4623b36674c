"""`opsbook compliance` as real processes: evidence from real scans, findings, acceptances and
JIT grants lands under its requirement with pointers to audit records; the pack verifies
offline with its own script and fails on a changed byte; bad input exits 2."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from tests.cli.conftest import Run

SECRET = 'api_token = "s3cr3tValue99887766"\n'


def _quarter() -> str:
    now = datetime.now(UTC)
    return f"{now.year}-Q{(now.month - 1) // 3 + 1}"


def test_a_report_gathers_the_evidence_and_its_pack_verifies_offline(
    ob: Run, ws_root: Path, tmp_path: Path
) -> None:
    with (ws_root / "opsbook.toml").open("a") as f:
        f.write(SECRET)
    assert ob("security", "check", "--only", "workspace.secrets-in-files").returncode == 1
    assert (
        ob(
            "findings",
            "accept",
            "FND-1",
            "--reason",
            "vault migration",
            "--until",
            "2099-01-01",
            "--as",
            "sam",
        ).returncode
        == 2
    )  # beyond max_acceptance
    r = ob(
        "findings",
        "accept",
        "FND-1",
        "--reason",
        "moved to vault this week",
        "--until",
        datetime.now(UTC).replace(microsecond=0).isoformat()[:10] + "T23:59:59Z",
        "--as",
        "sam",
    )
    assert r.returncode == 0, r.stderr
    assert ob("findings", "accept-approve", "FND-1", "--as", "carol").returncode == 0
    r = ob(
        "access", "request", "--role", "admin", "--for", "1h", "--reason", "INC-7", "--as", "olga"
    )
    assert r.returncode == 0, r.stderr
    assert ob("access", "approve", "JIT-1", "--as", "carol").returncode == 0
    pack = tmp_path / "pack"
    r = ob("compliance", "report", "--period", _quarter(), "--out", str(pack), "--json")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    by_req = {x["requirement"]: x for x in report["requirements"]}
    secrets = next(
        c for c in by_req["8.6.2"]["checks"] if c["check"] == "workspace.secrets-in-files"
    )
    assert secrets["runs"] == 1 and secrets["failed"] == 1 and secrets["audit_records"]
    assert by_req["8.6.2"]["findings"]["opened"] == ["FND-1"]
    (accepted,) = by_req["8.6.2"]["findings"]["accepted"]
    assert accepted["approved_by"] == "carol" and accepted["requested_by"] == "sam"
    (grant,) = by_req["7.2.2"]["jit_grants"]
    assert (
        grant["username"] == "olga" and grant["approved_by"] == "carol" and grant["audit_records"]
    )
    assert by_req["12.10.1"]["status"] == "no evidence"
    assert "12.10.1" in report["summary"]["no_evidence"]
    # the pack verifies offline, with nothing but python3 and the pack
    run = subprocess.run(
        [sys.executable, str(pack / "verify_compliance.py"), str(pack)],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert ob("compliance", "verify", str(pack)).returncode == 0
    events = (pack / "audit" / "events.jsonl").read_text()
    assert "security.compliance.reported" in events
    data = json.loads((pack / "compliance.json").read_text())
    data["summary"]["with_gaps"] = 0  # an edit, with the manifest recomputed to hide it
    (pack / "compliance.json").write_text(json.dumps(data))
    import hashlib

    lines = []
    for line in (pack / "manifest.sha256").read_text().splitlines():
        digest, name = line.split("  ", 1)
        if name == "compliance.json":
            digest = hashlib.sha256((pack / name).read_bytes()).hexdigest()
        lines.append(f"{digest}  {name}")
    (pack / "manifest.sha256").write_text("\n".join(lines) + "\n")
    r = ob("compliance", "verify", str(pack), "--json")
    assert r.returncode == 1
    assert json.loads(r.stdout)["problems"] == [
        "compliance.json: its SHA-256 is not the one the audit trail recorded"
    ]


def test_bad_input_exits_2(ob: Run) -> None:
    r = ob("compliance", "report", "--period", "2026-Q5")
    assert r.returncode == 2 and "--period" in r.stderr
    r = ob("compliance", "report", "--period", "2026-Q4", "--requirement", "99.9")
    assert r.returncode == 2 and "unknown requirement" in r.stderr
    r = ob("compliance", "report", "--period", "2026-Q4", "--standard", "iso-27001")
    assert r.returncode == 2 and "--standard" in r.stderr
    r = ob("compliance", "requirements", "--json")
    assert r.returncode == 0 and len(json.loads(r.stdout)["requirements"]) >= 30
