"""Customer impact from the real sandbox: payments made against the running payment service
during the incident are the review's numbers (its `/metrics` read at declaration and at
resolution); payments after resolution are not counted."""

from __future__ import annotations

from pathlib import Path

import pytest

from opsbook.db import open_database
from opsbook.incidents import impact, lifecycle
from opsbook.incidents.config import load_config
from opsbook.incidents.review import draft
from opsbook.incidents.service import declare
from tests.incidents.harness import http_receiver, make_ws, smtp_server
from tests.sandbox.harness import Sandbox, http, running_sandbox, sandbox_env

pytestmark = pytest.mark.slow


def _pay(sb: Sandbox, amount: int) -> int:
    code, _ = http(
        f"{sb.url('payment')}/payments",
        method="POST",
        body={"account_id": 3, "amount_cents": amount},
    )
    assert code is not None
    return code


def test_review_counts_the_payments_of_the_incident_window(tmp_path: Path) -> None:
    with smtp_server() as smtp, http_receiver() as hooks:
        root = tmp_path / "ws"
        make_ws(root, smtp_port=smtp.port, webhook=hooks.url)
        with running_sandbox(root, sandbox_env()) as sb:
            db = open_database(f"sqlite:///{root / '.opsbook' / 'opsbook.db'}")
            try:
                _pay(sb, 100)  # before the incident: not counted
                ref = declare(
                    db=db,
                    config=load_config(sb.ws),
                    title="Card payments failing",
                    actor="alice",
                    services=["payment", "account"],
                    severity="SEV2",
                ).incident.ref
                assert impact.take_due(db=db, workspace=sb.ws, owner="test") == 1
                codes = [_pay(sb, 10**12) for _ in range(3)]  # insufficient funds: failed
                codes += [_pay(sb, 100) for _ in range(2)]  # approved, or declined (1%)
                assert codes[:3] == [422, 422, 422]
                ok = codes.count(201)
                lifecycle.resolve(db=db, ref=ref, actor="bob")
                assert impact.take_due(db=db, workspace=sb.ws, owner="test") == 1
                _pay(sb, 100)  # after resolution: not counted
                md = draft(db=db, ref=ref, workspace=sb.ws)
            finally:
                db.close()
    failed = 5 - ok
    assert "(sandbox `/metrics`, declared → resolved):" in md, md
    assert f"  - payment: {failed} failed ({failed / 5:.1%} of 5), {ok} succeeded" in md, md
    assert "  - account:" not in md  # no payment counters there
