"""A replica that died mid-send leaves its notification `sending`; a live replica's outbox
loop marks it `unknown` while it keeps running, not only when it starts (ADR 0017 §6)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from opsbook.db import open_database
from opsbook.incidents.model import fmt_ts
from tests.incidents.harness import http_receiver, make_ws, smtp_server
from tests.server.test_serve_cli import serving

pytestmark = pytest.mark.slow


def test_a_running_replica_marks_another_replicas_stale_send_unknown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPSBOOK_INCIDENT_STALE_CHECK", "0.2")
    with smtp_server() as smtp, http_receiver() as hooks:
        ws = make_ws(tmp_path / "ws", smtp_port=smtp.port, webhook=hooks.url).root
        with serving(ws):
            db = open_database(f"sqlite:///{ws / '.opsbook' / 'opsbook.db'}")
            try:
                time.sleep(0.5)  # the server's first look (at start) has passed
                now = datetime.now(UTC)

                def sending(claimed_ago: timedelta) -> int:
                    return db.insert(
                        "INSERT INTO notifications (incident_id, kind, level, recipient,"
                        " message, state, created_at, claimed_by, claimed_at)"
                        " VALUES (NULL, 'email', NULL, ?, ?, 'sending', ?, ?, ?)",
                        (
                            json.dumps({"name": "x", "email": "x@example.org"}),
                            json.dumps({"subject": "s", "body": "b"}),
                            fmt_ts(now - claimed_ago),
                            "serve:dead-replica",
                            fmt_ts(now - claimed_ago),
                        ),
                    )

                dead = sending(timedelta(minutes=6))  # its replica died 6 minutes ago
                live = sending(timedelta(seconds=1))  # a live replica is sending it now
                deadline = time.monotonic() + 20
                while True:
                    row = db.one("SELECT state FROM notifications WHERE id = ?", (dead,))
                    if row is not None and row["state"] == "unknown":
                        break
                    assert time.monotonic() < deadline, "the stale send was never marked"
                    time.sleep(0.1)
                row = db.one("SELECT state FROM notifications WHERE id = ?", (live,))
                assert row is not None and row["state"] == "sending"  # not another's live send
            finally:
                db.close()
