"""The security actions the shipped runbook calls, on the real sandbox: an access review started
and closed (with the reviewers' decisions in between), an SBOM written into the evidence, and
a dependency scan from a recorded pip-audit output."""

from __future__ import annotations

from pathlib import Path

import pytest

from opsbook.actions import security
from opsbook.actions._registry import ActionContext
from opsbook.config import Settings
from opsbook.db import open_database
from opsbook.errors import ValidationError
from opsbook.secops import access
from tests.sandbox.harness import Sandbox

pytestmark = pytest.mark.slow
DATA = Path(__file__).parent / "data"


def _ctx(sb: Sandbox) -> ActionContext:
    return ActionContext(
        environment_name="sandbox",
        environment=sb.environment(),
        workspace=sb.ws.root,
        execution_id="ex-test",
        started_by="sam",
    )


async def test_an_access_review_through_the_action(sb: Sandbox) -> None:
    started = await security.access_review.func(
        _ctx(sb), {"action": "start", "reviewers": "security-engineer,engineering-manager"}
    )
    assert started["state"] == "open" and started["grants"] >= 6  # the platform's roles
    db = open_database(Settings.from_env().database_url_for(sb.ws.state_dir))
    try:
        with pytest.raises(Exception, match="nobody decided"):
            await security.access_review.func(
                _ctx(sb), {"action": "close", "campaign": started["ref"]}
            )
        items = access.get(db, started["ref"])["items"]
        to_revoke = sum(1 for it in items if it["principal"] == "ops-batch")
        assert to_revoke >= 1  # at least the platform's database role
        for it in items:
            decision = "revoke" if it["principal"] == "ops-batch" else "keep"
            access.decide(
                db,
                campaign=started["ref"],
                item=int(it["id"]),
                decision=decision,
                actor=it["reviewer"],
            )
    finally:
        db.close()
    closed = await security.access_review.func(
        _ctx(sb), {"action": "close", "campaign": started["ref"]}
    )
    assert closed["state"] == "closed" and closed["result"]["revoked"] == to_revoke
    with pytest.raises(ValidationError):
        await security.access_review.func(_ctx(sb), {"action": "start", "reviewers": []})


async def test_sbom_and_an_offline_scan(sb: Sandbox) -> None:
    out = await security.sbom.func(_ctx(sb), {})
    assert Path(out["file"]).is_file() and out["services"] == 4 and out["components"] > 20
    scan = await security.scan.func(_ctx(sb), {"offline": str(DATA / "recorded-pip-audit.json")})
    assert scan["error"] is None and scan["scan"]["reported"] == 1
