"""The resolve target survives a restart of the real `opsbook serve` process: declared (and
acknowledged) while server A runs, due while no server runs, fired by server B within 10 s of
due, paging Level 2 once and never again."""

from __future__ import annotations

import json
import os
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

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


def test_the_resolve_page_fires_after_a_restart_once(tmp_path: Path) -> None:
    with smtp_server() as smtp, http_receiver() as hooks:
        ws = make_ws(tmp_path / "ws", smtp_port=smtp.port, webhook=hooks.url, ack="1h").root
        contacts = ws / "contacts.yaml"
        contacts.write_text(contacts.read_text() + "  resolve_timeout: {SEV-2: 4s}\n")
        with serving(ws):
            out = _cli(
                ws,
                "incidents",
                "declare",
                "Slow payments",
                "-s",
                "payment",
                "--severity",
                "SEV2",
                "--json",
            )
            assert out.returncode == 0, out.stderr
            assert _cli(ws, "incidents", "ack", "INC-1").returncode == 0
        db = open_database(f"sqlite:///{ws / '.opsbook' / 'opsbook.db'}")
        try:
            (timer,) = db.query("SELECT * FROM incident_timers WHERE kind = 'resolve'")
            due = parse_ts(timer["due_at"])
            while datetime.now(UTC) < due:  # no server runs while the target passes
                time.sleep(0.1)
            time.sleep(0.5)
            state = db.one("SELECT state FROM incident_timers WHERE id = ?", (timer["id"],))
            assert state is not None and state["state"] == "pending"
            with serving(ws):
                deadline = time.monotonic() + 20
                while not smtp.to("l2@bank.test") and time.monotonic() < deadline:
                    time.sleep(0.1)
                assert smtp.to("l2@bank.test"), smtp.mails
                time.sleep(3)  # nothing more is paged
            fired = db.one("SELECT * FROM incident_timers WHERE id = ?", (timer["id"],))
            rows = db.query(
                "SELECT kind, payload FROM incident_events WHERE incident_id = 1 ORDER BY id"
            )
        finally:
            db.close()
    assert fired is not None and fired["state"] == "fired" and fired["attempt"] == 1
    assert 0 <= (parse_ts(fired["fired_at"]) - due).total_seconds() <= 10
    paged = [json.loads(r["payload"]) for r in rows if r["kind"] == "escalation.paged"]
    assert [p["level"] for p in paged] == ["level-1", "level-2"]
    assert paged[1]["reason"] == "not resolved within 4s (the SEV2 resolve target)"
    assert len(smtp.to("l2@bank.test")) == 1 and smtp.to("l3@bank.test") == []
