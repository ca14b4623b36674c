"""The daily security run of `opsbook serve` on the real sandbox: once a day per environment
(claimed, so replicas run it once), recorded as a scan, and dormant accounts disabled."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from opsbook.config import Settings
from opsbook.db import open_database
from opsbook.sandbox import iam
from opsbook.secops.background import daily_check
from opsbook.users.accounts import create_account, find_account, known_roles
from tests.sandbox.harness import Sandbox

pytestmark = pytest.mark.slow


async def test_the_daily_run_disables_dormant_accounts_once_a_day(
    sb: Sandbox, tmp_path: Path
) -> None:
    sb.control().call("inject", {"fault": "dormant-admin", "actor": "pytest"})
    db = open_database(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        roles = known_roles()
        create_account(db=db, actor="setup", username="ada", roles=["admin"], known=roles)
        create_account(db=db, actor="setup", username="old-bob", roles=["operator"], known=roles)
        long_ago = (datetime.now(UTC) - timedelta(days=120)).isoformat().replace("+00:00", "Z")
        db.execute(
            "UPDATE users SET created_at = ?, last_login_at = ? WHERE username = 'old-bob'",
            (long_ago, long_ago),
        )
        out = await daily_check(
            db=db, workspace=sb.ws, settings=Settings.from_env(), environment="sandbox"
        )
        assert out is not None
        assert sorted(out["disabled"]) == ["opsbook:old-bob", "platform:admin-legacy"]
        assert out["scan"]["new"] >= 2
        assert find_account(db=db, username="old-bob").disabled  # type: ignore[union-attr]
        assert not find_account(db=db, username="ada").disabled  # type: ignore[union-attr]
        legacy = next(a for a in iam.load(sb.data_dir) if a["name"] == "admin-legacy")
        assert legacy["disabled"] is True
        again = await daily_check(
            db=db, workspace=sb.ws, settings=Settings.from_env(), environment="sandbox"
        )
        assert again is None  # claimed for today already
        actions = [r["action"] for r in db.query("SELECT action FROM events")]
        assert "security.account.disabled" in actions and "user.disabled" in actions
    finally:
        db.close()
