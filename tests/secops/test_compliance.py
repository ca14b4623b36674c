"""The compliance report and pack (opsbook.secops.compliance) over a real SQLite workspace database.

Every row is written through the real code paths: findings and check results through
``findings.ingest``, a risk acceptance through ``request_acceptance``/``approve_acceptance``, an
access review campaign through ``access.start``/``decide``/``close``, a JIT grant through
``jit.request``/``approve``, and an execution of a tiny ``security-operations`` runbook (its
``access-review`` procedure with a four-eyes approval) through the real engine. Nothing is
inserted directly. The pack is written with a real witness key and verified offline by the
pack's own stdlib script in a subprocess."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from opsbook import audit
from opsbook.audit import WitnessConfig
from opsbook.db import open_database
from opsbook.engine import _journal as journal
from opsbook.engine import approvals
from opsbook.engine.states import State
from opsbook.errors import ValidationError
from opsbook.runbooks.model import ApprovalSpec
from opsbook.secops import access, findings, jit
from opsbook.secops.compliance import build_report, verify, write_pack
from opsbook.secops.model import FindingInput
from opsbook.secops.pci import REQUIREMENTS, check_requirement, parse_period
from tests.engine.conftest import Harness, make_workspace

RUNBOOK = """
---
id: security-operations
title: Security Operations
---

# Security Operations

## Access review

```yaml procedure
id: access-review
permissions: [operator]
```

### Approval to revoke

```approval
quorum: 1
roles: [approver]
```

### Revoke

```sh
echo revoked
```
"""

T0 = datetime(2026, 10, 5, 9, 0, tzinfo=UTC)  # inside 2026-Q4


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    """The engine tests' tiny workspace (users bob, carol as approvers) over a real SQLite file."""
    ws = make_workspace(tmp_path / "ws")
    db = open_database(f"sqlite:///{ws.state_dir / 'opsbook.db'}")
    yield Harness(ws, db)
    db.close()


def _finding(rule: str, requirements: tuple[str, ...], source: str = "check") -> FindingInput:
    return FindingInput(
        source=source,
        rule_id=rule,
        title=f"{rule} failed",
        severity="high",
        subject="workspace",
        environment="sandbox",
        location="opsbook.toml:3",
        requirements=requirements,
    )


async def _evidence(h: Harness) -> dict[str, str]:
    db = h.db
    # two scans of a check: the first fails and opens a finding, the second passes and fixes it
    fail = {"check_id": "workspace.secrets-in-files", "status": "fail", "severity": "high",
            "failures": 1, "detail": {}}  # fmt: skip
    ok = {**fail, "status": "pass", "failures": 0}
    first = findings.ingest(
        db, kind="check", environment="sandbox", source="check", complete=True, actor="scheduler",
        inputs=[_finding("secrets", ("8.6.2",))], results=[fail], now=T0,
    )  # fmt: skip
    findings.ingest(
        db, kind="check", environment="sandbox", source="check", complete=True, actor="scheduler",
        inputs=[], results=[ok], now=T0 + timedelta(days=1),
    )  # fmt: skip
    # a second finding, accepted by a second person
    second = findings.ingest(
        db, kind="import", environment="sandbox", source="trivy", complete=False, actor="sam",
        inputs=[_finding("CVE-2026-1", ("6.3.3",), "trivy")], now=T0 + timedelta(days=2),
    )  # fmt: skip
    accepted = second["findings"]["new"][0]
    findings.request_acceptance(
        db, finding=accepted, reason="no fix upstream yet", until="2026-11-01T00:00:00Z",
        actor="sam", now=T0 + timedelta(days=2),
    )  # fmt: skip
    findings.approve_acceptance(
        db, finding=accepted, actor="carol", roles=["manager"], now=T0 + timedelta(days=3)
    )
    # a critical finding nobody fixed: due a week later, past due in the period
    findings.ingest(
        db, kind="import", environment="sandbox", source="sarif", complete=False, actor="ci",
        inputs=[FindingInput(source="sarif", rule_id="hardcoded-key", title="key in code",
                             severity="critical", subject="ledger", environment="sandbox",
                             location="ledger/db.py:9", requirements=("3.5.1",))],
        now=T0,
    )  # fmt: skip
    # an access review campaign, decided and closed
    grant = access.Grant(
        kind="opsbook", principal="mallory", grant="admin", source="opsbook", detail={}
    )
    camp = access.start(
        db, name="Q4 review", environment="sandbox", reviewers=["carol", "bob"], actor="bob",
        grants=[grant], now=T0 + timedelta(days=4),
    )  # fmt: skip
    item = access.get(db, camp["ref"])["items"][0]
    access.decide(
        db, campaign=camp["ref"], item=int(item["id"]), decision="keep", actor=item["reviewer"],
        now=T0 + timedelta(days=4),
    )  # fmt: skip
    access.close(db, campaign=camp["ref"], actor="bob", data_dir=None, now=T0 + timedelta(days=5))
    # a JIT grant, approved by someone else
    g = jit.request(
        db, username="olga", role="admin", duration_s=3600, reason="INC-7",
        known_roles=["admin", "operator"], now=T0 + timedelta(days=6),
    )  # fmt: skip
    jit.approve(db, grant=g["ref"], actor="carol", roles=["manager"], now=T0 + timedelta(days=6))
    # the runbook's access-review procedure, approved by carol, run by the engine
    h.write("06_security_operations.md", RUNBOOK)
    out = await h.run("security-operations#access-review", user="bob")
    assert out.state_name == "AwaitingApproval"
    row = journal.get_execution(db=db, execution_id=out.execution_id)
    run = journal.step_runs(db=db, execution_id=row.id)[-1]
    with db.transaction():
        approvals.decide(
            db=db, execution=row, step_seq=run.seq, step_id=run.step_id, step_state=run.state,
            spec=ApprovalSpec(quorum=1, roles=("approver",)), approver="carol",
            approver_roles=("approver",), decision="approved", digest=row.digest,
        )  # fmt: skip
    done = await h.engine().resume(execution_id=row.id, actor="bob")
    assert done.state is State.SUCCEEDED
    return {
        "fixed": first["findings"]["new"][0],
        "accepted": accepted,
        "campaign": camp["ref"],
        "grant": g["ref"],
        "execution": row.id,
    }


def _events(h: Harness, ids: list[int]) -> list[dict[str, object]]:
    marks = ",".join("?" * len(ids))
    return h.db.query(f"SELECT * FROM events WHERE id IN ({marks})", ids)


async def test_each_requirement_gathers_its_evidence_with_audit_pointers(harness: Harness) -> None:
    refs = await _evidence(harness)
    start, end, label = parse_period("2026-Q4")
    report = build_report(harness.db, start=start, end=end, label=label)
    by = {r["requirement"]: r for r in report["requirements"]}
    assert list(by) == list(REQUIREMENTS)  # every requirement, even without evidence

    secrets = next(c for c in by["8.6.2"]["checks"] if c["check"] == "workspace.secrets-in-files")
    assert (secrets["runs"], secrets["passed"], secrets["failed"]) == (2, 1, 1)
    assert secrets["latest"]["status"] == "pass"
    assert {e["action"] for e in _events(harness, secrets["audit_records"])} == {"security.scanned"}
    assert by["8.6.2"]["findings"]["opened"] == [refs["fixed"]]
    assert by["8.6.2"]["findings"]["fixed"] == [refs["fixed"]]

    assert by["8.6.2"]["findings"]["overdue_in_period"] == []  # fixed the next day
    assert by["6.3.3"]["findings"]["overdue_in_period"] == []  # accepted before its due date
    missed = by["3.5.1"]["findings"]
    assert missed["opened"] == missed["overdue_in_period"] == missed["overdue_now"]
    assert by["3.5.1"]["status"] == "gaps"
    # a period ending before its due date: not (yet) past due there
    start, end, label = parse_period("2026-10-01..2026-10-06")
    early = build_report(harness.db, start=start, end=end, label=label, requirements=["3.5.1"])
    assert early["requirements"][0]["findings"]["overdue_in_period"] == []

    (acc,) = by["6.3.3"]["findings"]["accepted"]
    assert (acc["finding"], acc["requested_by"], acc["approved_by"]) == (
        refs["accepted"],
        "sam",
        "carol",
    )
    assert acc["audit_records"]
    assert {e["subject"] for e in _events(harness, acc["audit_records"])} == {
        f"finding:{refs['accepted']}"
    }

    (review,) = by["7.2.4"]["access_reviews"]
    assert review["campaign"] == refs["campaign"] and review["state"] == "closed"
    assert review["closed_by"] == "bob" and review["result"]["kept"] == 1
    assert {e["action"] for e in _events(harness, review["audit_records"])} >= {
        "access.review.started"
    }
    (grant,) = by["7.2.2"]["jit_grants"]
    assert (grant["grant"], grant["approved_by"]) == (refs["grant"], "carol")
    assert grant["audit_records"]

    (ex,) = by["7.2.4"]["executions"]
    assert ex["execution"] == refs["execution"] and ex["procedure"] == "access-review"
    assert ex["state"] == "Succeeded" or ex["state"].lower() == "succeeded"
    assert [(a["approver"], a["decision"]) for a in ex["approvals"]] == [("carol", "approved")]
    assert {e["execution_id"] for e in _events(harness, ex["audit_records"])} == {refs["execution"]}

    assert by["12.10.1"]["status"] == "no evidence"
    assert "12.10.1" in report["summary"]["no_evidence"]
    assert by["7.2.4"]["status"] == "evidence"

    # a period before any of it: every requirement is listed, none has evidence
    start, end, label = parse_period("2026-07-01..2026-09-30")
    empty = build_report(harness.db, start=start, end=end, label=label, requirements=["8.6.2"])
    assert [r["status"] for r in empty["requirements"]] == ["no evidence"]


async def test_the_pack_verifies_offline_and_names_a_changed_file(
    harness: Harness, tmp_path: Path
) -> None:
    await _evidence(harness)
    start, end, label = parse_period("2026-Q4")
    report = build_report(harness.db, start=start, end=end, label=label)
    wit = WitnessConfig(witness=tmp_path / "w" / "witness.jsonl", key_file=tmp_path / "w" / "k")
    pack = tmp_path / "pack"
    out = write_pack(harness.db, report=report, out_dir=pack, actor="auditor", witness=wit)
    assert out["chain_ok"]
    names = {p.relative_to(pack).as_posix() for p in pack.rglob("*") if p.is_file()}
    assert {"compliance.json", "COMPLIANCE.md", "manifest.sha256", "verify_compliance.py"} <= names
    assert "audit/events.jsonl" in names
    md = (pack / "COMPLIANCE.md").read_text()
    assert "## 7.2.4" in md and "carol" in md and "no evidence" in md
    assert verify(pack) == []
    run = subprocess.run(
        [sys.executable, str(pack / "verify_compliance.py"), str(pack)],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert audit.verify(db=harness.db).ok

    # a zip of the same pack verifies too
    zipped = write_pack(
        harness.db, report=report, out_dir=tmp_path / "pack.zip", actor="auditor", witness=wit
    )
    assert zipfile.is_zipfile(zipped["out"])
    assert verify(Path(zipped["out"])) == []

    # one changed byte: verification fails and names the file
    data = bytearray((pack / "COMPLIANCE.md").read_bytes())
    data[5] ^= 1
    (pack / "COMPLIANCE.md").write_bytes(bytes(data))
    assert verify(pack) == ["COMPLIANCE.md: SHA-256 differs from the manifest"]
    run = subprocess.run(
        [sys.executable, str(pack / "verify_compliance.py"), str(pack)],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 1 and "COMPLIANCE.md" in run.stdout

    # the same edit with the manifest recomputed to hide it: the signed chain still names it
    _remanifest(pack)
    assert verify(pack) == ["COMPLIANCE.md: its SHA-256 is not the one the audit trail recorded"]

    # an edited audit record behind a pack verify_chain.py that always passes: opsbook's own
    # verifier runs its own copy of verify_chain.py, so the change is found
    (pack / "COMPLIANCE.md").write_bytes(bytes(data[:5]) + bytes([data[5] ^ 1]) + bytes(data[6:]))
    (pack / "audit" / "verify_chain.py").write_text("import sys\nsys.exit(0)\n")
    events = (pack / "audit" / "events.jsonl").read_text().replace('"carol"', '"mallory"', 1)
    (pack / "audit" / "events.jsonl").write_text(events)
    _remanifest(pack)
    (problem,) = verify(pack)
    assert problem.startswith("audit chain:") and "events.jsonl" in problem


def _remanifest(pack: Path) -> None:
    lines = []
    for line in (pack / "manifest.sha256").read_text().splitlines():
        _, name = line.split("  ", 1)
        lines.append(f"{hashlib.sha256((pack / name).read_bytes()).hexdigest()}  {name}")
    (pack / "manifest.sha256").write_text("\n".join(lines) + "\n")


def test_bad_input_names_the_option() -> None:
    with pytest.raises(ValidationError) as e:
        check_requirement("99.9")
    assert e.value.field == "--requirement"
    for bad in (
        "2026-Q5",
        "2026-13",
        "2026-02-30..2026-03-01",
        "last quarter",
        "2026-12-01..2026-11-01",
    ):
        with pytest.raises(ValidationError) as e:
            parse_period(bad)
        assert e.value.field == "--period"
    start, end, _ = parse_period("2026-11")
    assert (start.month, end.month) == (11, 12)
    start, end, _ = parse_period("2026-11-01..2026-12-31")
    assert end == datetime(2027, 1, 1, tzinfo=UTC)


def test_the_cli_writes_a_zip_pack_and_exits_2_or_1_as_documented(tmp_path: Path) -> None:
    """`opsbook compliance` as a real process over a fresh workspace (no evidence at all)."""
    root = make_workspace(tmp_path / "ws").root
    env = {**os.environ, "OPSBOOK_WORKSPACE": str(root)}

    def ob(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "opsbook.cli.main", *args],
            capture_output=True,
            text=True,
            env=env,
            stdin=subprocess.DEVNULL,
            timeout=120,
        )

    zipped = tmp_path / "q4.zip"
    r = ob("compliance", "report", "--period", "2026-Q4", "--requirement", "8.2.6",
           "--requirement", "12.10.1", "--out", str(zipped), "--json")  # fmt: skip
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert [x["status"] for x in report["requirements"]] == ["no evidence", "no evidence"]
    assert report["pack"]["out"] == str(zipped) and zipfile.is_zipfile(zipped)
    r = ob("compliance", "verify", str(zipped), "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["ok"], r.stdout + r.stderr
    r = ob("compliance", "report", "--period", "2026-Q4", "--out", str(zipped))
    assert r.returncode == 2 and "--out" in r.stderr  # an existing pack is not overwritten

    # one changed byte inside the zip: exit 1, naming the file
    with zipfile.ZipFile(zipped) as zf:
        files = {n: zf.read(n) for n in zf.namelist()}
    name = next(n for n in files if n.endswith("/COMPLIANCE.md"))
    files[name] = files[name].replace(b"#", b"%", 1)
    with zipfile.ZipFile(zipped, "w") as zf:
        for n, data in files.items():
            zf.writestr(n, data)
    r = ob("compliance", "verify", str(zipped))
    assert r.returncode == 1 and "COMPLIANCE.md: SHA-256 differs" in r.stdout

    for args, field in [
        (("--period", "2026-Q4", "--requirement", "8.9.9"), "--requirement"),
        (("--period", "Q4-2026"), "--period"),
        (("--period", "2026-Q4", "--standard", "pci-dss-3.2.1"), "--standard"),
    ]:
        r = ob("compliance", "report", *args)
        assert r.returncode == 2 and field in r.stderr and "Traceback" not in r.stderr, r.stderr
    r = ob("compliance", "verify", str(tmp_path))
    assert r.returncode == 2 and "manifest.sha256" in r.stderr
