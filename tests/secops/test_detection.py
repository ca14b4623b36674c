"""Sigma detection (pySigma's SQLite backend) on a real sandbox of its own: a clean window fires
nothing; a credential-stuffing burst, a leaked token, a role granted outside a change, a large
transfer at 02:30 UTC and a failed audit verification each fire their rule once, become alerts
linking the containment procedure, and a second pass raises nothing new; a malformed rule file
is refused naming the file."""

from __future__ import annotations

import shutil
import sqlite3
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from opsbook.config import Settings
from opsbook.db import Database, open_database
from opsbook.errors import ValidationError
from opsbook.secops import findings
from opsbook.secops.model import FindingInput
from opsbook.secops.sigma import detect, load_rules
from opsbook.users.accounts import create_account, grant_role, known_roles
from tests.sandbox.harness import Sandbox, running_sandbox

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    with running_sandbox(tmp_path_factory.mktemp("secops-detect") / "ws") as sb:
        yield sb


@pytest.fixture
def db(sandbox: Sandbox) -> Iterator[Database]:
    d = open_database(Settings.from_env().database_url_for(sandbox.ws.state_dir))
    yield d
    d.close()


def _detect(sb: Sandbox, db: Database, since: timedelta = timedelta(minutes=10)) -> dict:  # type: ignore[type-arg]
    return detect(db=db, workspace=sb.ws, environment="sandbox", since=since, actor="pytest")


def _titles(out: dict) -> set[str]:  # type: ignore[type-arg]
    return {h["title"] for h in out["hits"]}


def test_1_a_clean_window_fires_nothing(sb: Sandbox, db: Database) -> None:
    out = _detect(sb, db)
    assert out["rules"] == 6 and out["events"] > 0
    assert out["hits"] == []


def test_2_brute_force_and_a_leaked_token_become_alerts(sb: Sandbox, db: Database) -> None:
    sb.control().call("inject", {"fault": "suspicious-logins", "actor": "pytest"})
    sb.control().call("inject", {"fault": "leaked-token", "actor": "pytest"})
    time.sleep(4)
    sb.control().call("clear", {"actor": "pytest"})
    out = _detect(sb, db)
    brute = [h for h in out["hits"] if h["title"] == "Login brute force from one address"]
    assert {h["group"] for h in brute} >= {"src_ip=203.0.113.7", "src_ip=198.51.100.23"}
    assert all(h["new"] and h["events"] >= 10 for h in brute)
    leaked = [h for h in out["hits"] if h["title"] == "Token used from a new address"]
    assert [h["group"] for h in leaked] == ["user=ops-batch,src_ip=198.51.100.77"]
    alerts = db.query("SELECT labels, runbook, status FROM mon_alerts WHERE source = 'sigma'")
    assert len(alerts) == out["new"] and all(
        a["runbook"] == "security-operations#incident-containment" and a["status"] == "firing"
        for a in alerts
    )
    found = db.query(
        "SELECT subject, severity, requirements, state FROM security_findings"
        " WHERE source = 'detection' AND title = 'Login brute force from one address'"
    )
    assert {f["subject"] for f in found} == {h["group"] for h in brute}
    assert all(f["state"] == "open" and "8.3.4" in f["requirements"] for f in found)
    assert out["findings"] is not None
    again = _detect(sb, db)
    assert again["new"] == 0 and len(again["hits"]) == len(out["hits"])
    assert again["findings"] is None
    # escalated (nobody acknowledged it), the alert declares a security incident
    from opsbook.incidents.alert_bridge import IncidentNotifier
    from opsbook.monitoring.alerts import get_alert
    from opsbook.monitoring.escalation import Contact

    fp = db.one("SELECT fingerprint FROM mon_alerts WHERE labels LIKE '%Token used%'")
    assert fp is not None
    alert = get_alert(db, fp["fingerprint"])
    templates = Path(__file__).resolve().parents[2] / "src/opsbook/workspace/templates"
    for name in ("incident_policy.yaml", "contacts.yaml"):
        if not (sb.ws.root / name).exists():
            shutil.copy(templates / name, sb.ws.root / name)
    IncidentNotifier(db=db, workspace=sb.ws).notify(
        alert=alert, level=Contact("L1", "On-call engineer", ()), reason="not acknowledged"
    )
    incident = db.one("SELECT type, severity FROM incidents ORDER BY id DESC LIMIT 1")
    assert incident is not None and incident["type"] == "security"
    assert incident["severity"] == "SEV2"
    assert db.one("SELECT id FROM events WHERE action = 'security.detected'")


def test_3_a_role_granted_outside_a_change(sb: Sandbox, db: Database) -> None:
    create_account(db=db, actor="ada", username="mallory", roles=["operator"], known=known_roles())
    grant_role(db=db, actor="ada", username="mallory", role="admin", known=known_roles())
    out = _detect(sb, db)
    (hit,) = [h for h in out["hits"] if h["title"] == "Privilege change outside a change"]
    assert "actor=ada" in hit["group"] and hit["new"]


def test_4_a_large_transfer_at_an_unusual_hour(sb: Sandbox, db: Database) -> None:
    night = datetime.now(UTC).replace(hour=2, minute=30, second=0, microsecond=0)
    ledger = sqlite3.connect(sb.data_dir / "ledger.db")
    try:  # a transfer recorded at 02:30 UTC today (the ledger's own table, as written at night)
        ledger.execute(
            "INSERT INTO transfers (from_account, to_account, amount_cents, status, kind,"
            " created_at) VALUES (3, 4, 2500000, 'completed', 'transfer', ?)",
            (night.isoformat().replace("+00:00", "Z"),),
        )
        ledger.commit()
    finally:
        ledger.close()
    out = _detect(sb, db, since=datetime.now(UTC) - night + timedelta(minutes=1))
    (hit,) = [h for h in out["hits"] if h["title"] == "Large transfer at an unusual hour"]
    assert "amount_cents=2500000" in hit["group"]


def test_5_a_failed_audit_verification(sb: Sandbox, db: Database) -> None:
    findings.ingest(
        db,
        kind="checks",
        environment="sandbox",
        source="check",
        inputs=[
            FindingInput(
                source="check",
                rule_id="audit.chain",
                title="The audit trail verifies",
                severity="critical",
                subject="audit chain",
                environment="sandbox",
            )
        ],
        complete=False,
        actor="pytest",
        results=[
            {"check_id": "audit.chain", "status": "fail", "severity": "critical", "failures": 1}
        ],
    )
    out = _detect(sb, db)
    assert "Audit trail verification failed" in _titles(out)
    alert = db.one(
        "SELECT labels FROM mon_alerts WHERE labels LIKE '%Audit trail verification failed%'"
    )
    assert alert is not None and '"severity":"critical"' in alert["labels"]


def test_6_a_malformed_rule_is_refused_naming_the_file(sb: Sandbox) -> None:
    bad = sb.ws.root / "security" / "detections" / "broken.yml"
    bad.parent.mkdir(parents=True, exist_ok=True)
    bad.write_text("title: no detection here\nlogsource: {product: opsbook}\n")
    try:
        with pytest.raises(ValidationError) as err:
            load_rules(sb.ws)
        assert err.value.location is not None
        assert err.value.location.path.endswith("broken.yml") and err.value.field == "detection"
    finally:
        bad.unlink()
    Path(bad.parent).rmdir()


def test_7_the_cli_json_shape(sb: Sandbox) -> None:
    import json
    import os
    import subprocess
    import sys

    env = {**os.environ, "OPSBOOK_WORKSPACE": str(sb.ws.root)}
    argv = ["security", "detect", "--env", "sandbox", "--since", "10m", "--no-alerts", "--json"]
    r = subprocess.run(
        [sys.executable, "-m", "opsbook.cli.main", *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert {"environment", "window", "rules", "events", "hits", "new", "findings"} <= set(out)
    assert out["environment"] == "sandbox" and set(out["window"]) == {"from", "to"}
    for h in out["hits"]:
        assert {"rule", "title", "level", "group", "events", "first", "last", "new"} <= set(h)
