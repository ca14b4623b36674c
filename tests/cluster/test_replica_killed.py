"""A server replica killed (`kill -9`) while it holds timers or the leader lock (ADR 0017 §9):
escalation timers are fired exactly once by the replicas that live, a claim left open by a
dying replica is fired by another, and the leader-only loops move to the other replica. Real
PostgreSQL, real `opsbook serve` processes; waits poll the database with a deadline."""

from __future__ import annotations

import json
import os
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from opsbook.db import Database, open_database
from opsbook.incidents.config import load_config
from opsbook.incidents.model import fmt_ts
from opsbook.incidents.service import declare
from tests.cluster.conftest import wait_until
from tests.incidents.harness import http_receiver, make_ws, smtp_server
from tests.server import test_leader_loops
from tests.server.test_leader_loops import Serve

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

pg_database = test_leader_loops.pg_database  # a database of the test's own


@pytest.fixture
def replicas_env(tmp_path: Path, pg_database: str) -> Iterator[tuple[Path, dict[str, str]]]:
    with smtp_server() as smtp, http_receiver() as hooks:
        ws = make_ws(tmp_path / "ws", smtp_port=smtp.port, webhook=hooks.url, ack="3s").root
        env = {
            **os.environ,
            "OPSBOOK_WORKSPACE": str(ws),
            "OPSBOOK_DATABASE_URL": pg_database,
            "OPSBOOK_INCIDENT_TICK": "0.2",
            "OPSBOOK_LEADER_POLL": "0.3",
            "OPSBOOK_WORKER_HEARTBEAT": "0.5",
            "OPSBOOK_WORKER_LEASE": "10",
        }
        env.pop("OPSBOOK_BROKER_URL", None)
        yield ws, env


def _timer_events(db: Database) -> Counter[int]:
    rows = db.query("SELECT payload FROM events WHERE action LIKE ?", ("incident.timer.%",))
    return Counter(int(json.loads(str(r["payload"]))["timer"]) for r in rows)


def _declare(db: Database, ws: Path, count: int) -> None:
    from opsbook.workspace import Workspace

    config = load_config(Workspace.load(ws))
    for i in range(count):
        declare(
            db=db,
            config=config,
            title=f"Accounts unavailable {i}",
            actor="alice",
            services=["account"],
            impact="significant",
            urgency="high",
        )
        time.sleep(0.1)  # their acknowledgement timers fall due over two seconds


def test_timers_fire_exactly_once_when_a_replica_is_killed_halfway(
    replicas_env: tuple[Path, dict[str, str]], pg_database: str
) -> None:
    ws, env = replicas_env
    db = open_database(pg_database)
    a = b = None
    try:
        a, b = Serve(ws, env, "a"), Serve(ws, env, "b")
        _declare(db, ws, 20)
        wait_until(lambda: sum(_timer_events(db).values()) >= 5, timeout=30, what="timers firing")
        os.kill(a.proc.pid, signal.SIGKILL)  # halfway: A may be inside a claim
        a.proc.wait(10)

        def settled() -> bool:
            overdue = fmt_ts_seconds_ago(1.5)
            row = db.one(
                "SELECT COUNT(*) AS n FROM incident_timers WHERE state = 'pending'"
                " AND due_at <= ? AND kind NOT IN ('snapshot_start', 'snapshot_end')",
                (overdue,),
            )
            first = db.one(
                "SELECT COUNT(*) AS n FROM incident_timers WHERE kind = 'escalate'"
                " AND level = 0 AND state = 'fired'"
            )
            return bool(row and row["n"] == 0 and first and first["n"] == 20)

        wait_until(settled, timeout=60, what="every due timer fired by B")
        assert b.stop() == 0
        fired = {
            int(r["id"])
            for r in db.query(
                "SELECT id FROM incident_timers WHERE state = 'fired'"
                " AND kind NOT IN ('snapshot_start', 'snapshot_end')"  # impact readings
            )
        }
        events = _timer_events(db)
        assert set(events) == fired  # every fired timer recorded, nothing else
        assert max(events.values()) == 1  # and none twice
        pages = db.query(
            "SELECT incident_id, level, recipient, COUNT(*) AS n FROM notifications"
            " WHERE kind <> 'status' GROUP BY incident_id, level, recipient, message"
        )
        assert pages and all(p["n"] == 1 for p in pages)
    finally:
        for serve in (a, b):
            if serve is not None:
                serve.stop()
        db.close()


def fmt_ts_seconds_ago(seconds: float) -> str:
    from datetime import UTC, datetime, timedelta

    return fmt_ts(datetime.now(UTC) - timedelta(seconds=seconds))


def test_a_claim_left_open_by_a_dying_replica_is_fired_once_by_another(
    replicas_env: tuple[Path, dict[str, str]], pg_database: str
) -> None:
    """What `kill -9` mid-fire leaves: the claim UPDATE in a transaction that never commits."""
    ws, env = replicas_env
    db = open_database(pg_database)
    b = None
    try:
        _declare(db, ws, 1)
        timer = db.one(
            "SELECT id FROM incident_timers WHERE kind = 'escalate' AND state = 'pending'"
        )
        assert timer is not None
        dying = psycopg.connect(pg_database)
        dying.execute(
            "UPDATE incident_timers SET state = 'fired', fired_by = 'serve:dying' WHERE id = %s"
            " AND state = 'pending'",
            (timer["id"],),
        )  # holds the row; never commits
        b = Serve(ws, env, "b")
        time.sleep(3.5)  # the timer falls due while the dying replica holds it
        dying.close()  # its session ends: the claim rolls back
        wait_until(
            lambda: _timer_events(db).get(int(timer["id"])) == 1,
            timeout=30,
            what="B firing the timer",
        )
        time.sleep(1)
        assert _timer_events(db)[int(timer["id"])] == 1
        row = db.one("SELECT fired_by FROM incident_timers WHERE id = ?", (timer["id"],))
        assert row is not None and row["fired_by"] != "serve:dying"
    finally:
        if b is not None:
            b.stop()
        db.close()


def test_the_leader_killed_the_other_replica_takes_over(
    replicas_env: tuple[Path, dict[str, str]], pg_database: str
) -> None:
    ws, env = replicas_env
    db = open_database(pg_database)
    a = b = None

    def acquisitions() -> list[str]:
        rows = db.query(
            "SELECT payload FROM events WHERE action = 'cluster.leader.acquired' ORDER BY id"
        )
        return [str(json.loads(str(r["payload"]))["holder"]) for r in rows]

    try:
        a = Serve(ws, env, "a")
        wait_until(lambda: acquisitions() == [a.token], what="A leading")
        b = Serve(ws, env, "b")
        time.sleep(1)  # B tries (poll 0.3 s) and does not lead
        assert acquisitions() == [a.token]
        os.kill(a.proc.pid, signal.SIGKILL)
        a.proc.wait(10)
        wait_until(lambda: len(acquisitions()) == 2, timeout=30, what="B taking over")
        assert acquisitions() == [a.token, b.token]
        assert b.leading() == dict.fromkeys(["monitoring", "security", "backups"], 1.0)
    finally:
        for serve in (a, b):
            if serve is not None:
                serve.stop()
        db.close()
