"""Containment actions and their reverses on the real sandbox: isolation at the front door (the
port and the gateway answer 403 while the processes keep running), a frozen ledger account,
revoked access (opsbook tokens and the platform account's token), and a forensic snapshot whose
manifest verifies and catches a changed byte."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from opsbook.actions import containment
from opsbook.actions._registry import ActionContext
from opsbook.config import Settings
from opsbook.db import open_database
from opsbook.secops.forensics import hand_off, verify
from opsbook.users.accounts import create_account, get_account, known_roles
from opsbook.users.errors import AuthenticationError
from opsbook.users.sessions import create_session, resolve_session
from opsbook.users.tokens import create_token, resolve_token
from tests.sandbox.harness import Sandbox

pytestmark = pytest.mark.slow


def _ctx(sb: Sandbox, dry_run: bool = False) -> ActionContext:
    return ActionContext(
        environment_name="sandbox",
        environment=sb.environment(),
        workspace=sb.ws.root,
        execution_id="ex-test",
        started_by="sam",
        dry_run=dry_run,
    )


async def _do(sb: Sandbox, spec: Any, **args: Any) -> Any:
    return await spec.func(_ctx(sb), args)


async def test_isolate_and_release_a_service(sb: Sandbox) -> None:
    gateway = sb.environment()["api_base"]
    pids = [p["pid"] for p in sb.service("payment")["pods"]]
    out = await _do(sb, containment.isolate, service="payment", ticket="INC-7")
    assert out["changed"] is True
    r = httpx.get(sb.url("payment") + "/health", timeout=3)
    assert r.status_code == 403 and r.json()["error"] == "isolated"
    assert httpx.get(gateway + "/api/payment/health", timeout=3).status_code == 403
    assert httpx.get(sb.url("account") + "/health", timeout=3).status_code == 200
    assert [p["pid"] for p in sb.service("payment")["pods"]] == pids  # still running
    await _do(sb, containment.release, service="payment", ticket="INC-7")
    assert httpx.get(sb.url("payment") + "/health", timeout=3).status_code == 200
    assert httpx.get(gateway + "/api/payment/health", timeout=3).status_code == 200
    db = open_database(Settings.from_env().database_url_for(sb.ws.state_dir))
    try:
        audited = db.query(
            "SELECT action FROM events WHERE subject = 'service:payment' ORDER BY id"
        )
    finally:
        db.close()
    assert [r["action"] for r in audited][-2:] == [
        "security.containment.isolate",
        "security.containment.release",
    ]
    dry = await containment.isolate.func(_ctx(sb, dry_run=True), {"service": "payment"})
    assert dry["would_run"]


async def test_freeze_and_unfreeze_a_ledger_account(sb: Sandbox) -> None:
    body = {"from_account": 3, "to_account": 4, "amount_cents": 100}
    await _do(sb, containment.freeze, account=3, ticket="INC-7")
    r = httpx.post(sb.url("transaction") + "/transfers", json=body, timeout=3)
    assert r.status_code == 423 and "frozen" in r.text
    assert httpx.get(sb.url("account") + "/accounts/3", timeout=3).json()["frozen"] is True
    await _do(sb, containment.unfreeze, account=3, ticket="INC-7")
    assert httpx.post(sb.url("transaction") + "/transfers", json=body, timeout=3).status_code == 201


async def test_revoke_access_revokes_tokens_and_the_platform_token(sb: Sandbox) -> None:
    db = open_database(Settings.from_env().database_url_for(sb.ws.state_dir))
    try:
        create_account(
            db=db, actor="setup", username="ops-batch", roles=["operator"], known=known_roles()
        )
        _, secret = create_token(
            db=db, actor="setup", username="ops-batch", name="batch", scopes=["read"]
        )
        cookie, _ = create_session(
            db=db,
            account=get_account(db=db, username="ops-batch"),
            method="password",
            ttl=timedelta(hours=1),
        )
        headers = {"Authorization": "Bearer sbx.ops-batch.x"}
        assert (
            httpx.get(sb.url("account") + "/accounts/1", headers=headers, timeout=3).status_code
            == 200
        )
        out = await _do(sb, containment.revoke_access, username="ops-batch", ticket="INC-7")
        assert len(out["tokens_revoked"]) == 1 and out["platform_account_disabled"] is True
        assert out["sessions_ended"] == 1
        assert resolve_session(db=db, raw=cookie, idle_timeout=timedelta(hours=1)) is None
        with pytest.raises(AuthenticationError):
            resolve_token(db=db, raw=secret)
        r = httpx.get(sb.url("account") + "/accounts/1", headers=headers, timeout=3)
        assert r.status_code == 401 and r.json()["error"] == "token_revoked"
        back = await _do(sb, containment.restore_access, username="ops-batch", ticket="INC-7")
        assert back["platform_account_enabled"] is True
        with pytest.raises(AuthenticationError):  # revoked tokens have no reverse, by design
            resolve_token(db=db, raw=secret)
        assert resolve_session(db=db, raw=cookie, idle_timeout=timedelta(hours=1)) is None
        assert [
            r["action"]
            for r in db.query(
                "SELECT action FROM events WHERE subject = 'user:ops-batch'"
                " AND action LIKE 'security.access.%' ORDER BY id"
            )
        ] == ["security.access.revoked", "security.access.restored"]
        assert (
            httpx.get(sb.url("account") + "/accounts/1", headers=headers, timeout=3).status_code
            == 200
        )
    finally:
        db.close()


async def test_a_forensic_snapshot_verifies_and_catches_tampering(sb: Sandbox) -> None:
    out = await _do(sb, containment.forensic_snapshot, service="payment", ticket="INC-7")
    path = Path(out["path"])
    assert {"payment.log", "processes.json", "ledger.db", "manifest.json"} <= {
        p.name for p in path.iterdir()
    }
    db = open_database(Settings.from_env().database_url_for(sb.ws.state_dir))
    try:
        assert verify(path, db)["ok"] is True
        row = db.one(
            "SELECT taken_by, ticket, execution_id FROM custody_records WHERE path = ?",
            (str(path),),
        )
        assert row == {"taken_by": "sam", "ticket": "INC-7", "execution_id": "ex-test"}
        assert db.one("SELECT id FROM events WHERE action = 'security.evidence.taken'")
        log = path / "payment.log"
        os.chmod(log, 0o600)
        data = bytearray(log.read_bytes())
        data[0] ^= 1
        log.write_bytes(bytes(data))
        bad = verify(path, db)
        assert bad["ok"] is False and bad["problems"] == [
            "payment.log: SHA-256 differs from the manifest"
        ]
        rec = hand_off(db, snapshot=out["id"], to="forensics-lab", actor="sam", note="bag 42")
        assert [(h["from"], h["to"]) for h in rec["handoffs"]] == [("sam", "forensics-lab")]
        assert db.one(
            "SELECT id FROM events WHERE action = 'security.evidence.handed-off' AND subject = ?",
            (f"evidence:{out['id']}",),
        )
    finally:
        db.close()
