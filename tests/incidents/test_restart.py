"""The escalation timer survives a restart of the real `opsbook serve` process.

SEV2 with a 4 s acknowledgement target: declared while server A runs, A is stopped before the
timer is due, server B starts after it is due and must page level 2 within 10 s of due, once;
level 2 acknowledges through the signed link in its email, and escalation stops.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from opsbook.db import open_database
from opsbook.incidents.model import parse_ts
from tests.incidents.harness import http_receiver, make_ws, smtp_server
from tests.server.test_serve_cli import OPSBOOK, serving

pytestmark = pytest.mark.slow


def _cli(ws: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*OPSBOOK, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "OPSBOOK_WORKSPACE": str(ws), "OPSBOOK_USER": "alice"},
    )


def test_escalation_fires_after_a_restart_within_10s_and_once(tmp_path: Path) -> None:
    with smtp_server() as smtp, http_receiver() as hooks:
        ws = make_ws(tmp_path / "ws", smtp_port=smtp.port, webhook=hooks.url, ack="4s").root
        with serving(ws):
            out = _cli(
                ws,
                "incidents",
                "declare",
                "Accounts unavailable",
                "--service",
                "account",
                "--impact",
                "significant",
                "--urgency",
                "high",
                "--json",
            )
            assert out.returncode == 0, out.stderr
            declared = json.loads(out.stdout)
        assert declared["severity"] == "SEV2"
        assert len(smtp.to("l1@bank.test")) == 1  # level 1 paged by email …
        assert len(hooks.on("/hook/l1")) == 1  # … and by the team's webhook
        db = open_database(f"sqlite:///{ws / '.opsbook' / 'opsbook.db'}")
        try:
            (timer,) = db.query("SELECT * FROM incident_timers WHERE kind = 'escalate'")
            due = parse_ts(timer["due_at"])
            while datetime.now(UTC) < due:  # no server runs while the timer comes due
                time.sleep(0.1)
            time.sleep(0.5)
            assert (
                db.one("SELECT state FROM incident_timers WHERE id = ?", (timer["id"],))["state"]
                == "pending"
            )  # type: ignore[index]
            # No server ran at the due time, so "within 10 s of due" is counted from when one
            # could fire it: the later of the due time and server B's start.
            b_started = datetime.now(UTC)
            with serving(ws) as (url, _):
                mails = [m for m in smtp.wait_for(2, timeout=20) if m.to == "l2@bank.test"]
                fired = db.one("SELECT * FROM incident_timers WHERE id = ?", (timer["id"],))
                assert fired is not None and fired["state"] == "fired"
                fired_at = parse_ts(fired["fired_at"])
                assert fired_at >= due
                lateness = (fired_at - max(due, b_started)).total_seconds()
                assert lateness <= 10, lateness
                token = re.search(r"/incidents/INC-1/ack\?t=(\S+)", mails[0].body)
                assert token, mails[0].body
                with httpx.Client(base_url=url) as client:
                    page = client.get("/incidents/INC-1/ack", params={"t": token.group(1)})
                    assert page.status_code == 200 and "sent to <strong>l2" in page.text
                    done = client.post("/incidents/INC-1/ack", data={"t": token.group(1)})
                    assert done.status_code == 200
                    forged = client.post("/incidents/INC-1/ack", data={"t": "x.y"})
                    assert forged.status_code == 403
                time.sleep(5)  # longer than the ack target: nothing more is paged
            rows = db.query(
                "SELECT kind, payload FROM incident_events WHERE incident_id = 1 ORDER BY id"
            )
        finally:
            db.close()
        paged = [json.loads(r["payload"])["level"] for r in rows if r["kind"] == "escalation.paged"]
        assert paged == ["level-1", "level-2"]
        ack = [json.loads(r["payload"]) for r in rows if r["kind"] == "acknowledged"]
        assert ack == [{"via": "signed-link"}]
        assert len(smtp.to("l2@bank.test")) == 1
        assert len(smtp.to("l3@bank.test")) == 0
        show = json.loads(_cli(ws, "incidents", "show", "INC-1", "--json").stdout)
        assert show["acknowledged_by"] == "link:l2"
