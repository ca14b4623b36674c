"""The security check catalogue on the real sandbox: a clean sandbox has no failure above low,
and every security fault the sandbox can inject turns the check red with a failure naming it."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from opsbook.config import Settings
from opsbook.db import open_database
from opsbook.sandbox.faults import FAULTS
from opsbook.secops.catalogue import CATALOGUE
from opsbook.secops.checks import CheckRun, run_checks
from opsbook.secops.model import at_least
from tests.sandbox.harness import Sandbox, wait_for

pytestmark = pytest.mark.slow

#: every fault with a security symptom and the check that must name it
CAUGHT_BY = {
    "cert-expiring": ("tls.cert-expiry", "expires in"),
    "suspicious-logins": ("auth.brute-force", "failed logins from"),
    "pan-in-log": ("data.pan-in-logs", "411111******1111"),
    "weak-tls": ("tls.protocols", "TLS.1"),
    "expired-cert": ("tls.cert-expired", "EXPIRED"),
    "dormant-admin": ("accounts.dormant", "admin-legacy"),
    "leaked-token": ("auth.token-new-address", "198.51.100.77"),
}


def _run(sb: Sandbox, tmp_path: Path, **kw: Any) -> CheckRun:
    db = open_database(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        return run_checks(
            workspace=sb.ws, environment="sandbox", db=db, settings=Settings.from_env(), **kw
        )
    finally:
        db.close()


def _failed(run: CheckRun, check: str) -> list[str]:
    return [f.text for r in run.results if r.spec.id == check for f in r.outcome.failures]


def test_every_security_fault_has_a_check_that_names_it() -> None:
    security = {f for f, spec in FAULTS.items() if spec.security} | {
        "cert-expiring",
        "suspicious-logins",
    }
    assert security == set(CAUGHT_BY)
    for fault, (check, _) in CAUGHT_BY.items():
        assert fault in CATALOGUE[check].catches


def test_a_clean_sandbox_has_no_failure_above_low(sb: Sandbox, tmp_path: Path) -> None:
    run = _run(sb, tmp_path)
    by_id = {r.spec.id: r for r in run.results}
    assert set(by_id) == set(CATALOGUE)
    bad = {
        r.spec.id: [f.text for f in r.outcome.failures]
        for r in run.results
        if any(at_least(f.severity or r.spec.severity, "medium") for f in r.outcome.failures)
    }
    assert bad == {}
    errors = {r.spec.id: r.outcome.error for r in run.results if r.outcome.status == "error"}
    assert errors == {}
    assert by_id["tls.protocols"].outcome.status == "pass"
    assert by_id["tls.protocols"].outcome.evidence["accepted"] in (
        ["tls_1_2", "tls_1_3"],
        ["tls_1_2"],
    )
    assert by_id["tls.cert-expiry"].outcome.evidence["days_left"] > 300
    assert by_id["ledger.integrity"].outcome.status == "pass"
    assert by_id["tls.plain-http"].outcome.status == "skipped"


@pytest.mark.parametrize("fault", sorted(CAUGHT_BY))
def test_each_security_fault_turns_the_check_red(sb: Sandbox, tmp_path: Path, fault: str) -> None:
    check, words = CAUGHT_BY[fault]
    service = "payment" if FAULTS[fault].target == "service" else None
    sb.control().call("inject", {"fault": fault, "service": service, "actor": "pytest"})
    if fault in ("suspicious-logins", "leaked-token"):
        time.sleep(4)  # the attack has to happen first
    run = _run(sb, tmp_path, only=[check])
    texts = _failed(run, check)
    assert any(words in t for t in texts), texts
    if fault == "pan-in-log":
        assert len([t for t in texts if words in t]) == 1  # one line, reported once
        assert "4111111111111111" not in repr(run.to_dict())
        log = (sb.data_dir / "logs" / "payment.log").read_bytes()
        sb.control().call("clear", {"fault": fault, "actor": "pytest"})
        wait_for(
            lambda: b"4111111111111111" not in (sb.data_dir / "logs" / "payment.log").read_bytes()
        )
        assert b"4111111111111111" in log
        assert _failed(_run(sb, tmp_path, only=[check]), check) == []
