"""One leader for the loops that must not run twice (ADR 0017 §6): of two `opsbook serve` on
one database, exactly one runs monitoring, security and backups; when it stops, the other
takes over. PostgreSQL: an advisory lock; SQLite: a lock file beside the database. Real
processes; waits poll the database (and /metrics) with a deadline."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from opsbook.cluster.leader import LEADER_KEY
from opsbook.db import Database, open_database
from opsbook.sandbox.config import free_port
from tests.cluster.conftest import token_of, wait_until

OPSBOOK = [sys.executable, "-m", "opsbook.cli.main"]
LOOPS = ["monitoring", "security", "backups"]


class Serve:
    """One `opsbook serve` process on the shared workspace and database."""

    def __init__(self, ws: Path, env: dict[str, str], name: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = ws.parent / f"serve-{name}.log"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [*OPSBOOK, "serve", "--port", str(self.port), "--no-schedules"],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        wait_until(self.healthy, timeout=60, what=f"serve {name} answering")
        self.token = token_of(self.proc.pid)

    def healthy(self) -> bool:
        assert self.proc.poll() is None, self.log.read_text(errors="replace")
        try:
            return httpx.get(self.url + "/api/v1/health", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    def leading(self) -> dict[str, float]:
        """``opsbook_background_leader`` by loop, from this serve's /metrics."""
        text = httpx.get(self.url + "/metrics", timeout=10).text
        return {
            s.labels["loop"]: s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
            if s.name == "opsbook_background_leader"
        }

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(10)


class Replicas:
    def __init__(self, root: Path, database_url: str | None) -> None:
        self.ws = root / "ws"
        subprocess.run([*OPSBOOK, "init", str(self.ws)], check=True, capture_output=True)
        self.env = {
            **os.environ,
            "OPSBOOK_WORKSPACE": str(self.ws),
            "OPSBOOK_LEADER_POLL": "0.3",
            "OPSBOOK_WORKER_HEARTBEAT": "0.5",
            "OPSBOOK_WORKER_LEASE": "10",
        }
        self.env.pop("OPSBOOK_BROKER_URL", None)
        if database_url:
            self.env["OPSBOOK_DATABASE_URL"] = database_url
        self.database_url = database_url or f"sqlite:///{self.ws / '.opsbook' / 'opsbook.db'}"
        self.serves: list[Serve] = []
        self._db: Database | None = None

    def serve(self, name: str) -> Serve:
        self.serves.append(Serve(self.ws, self.env, name))
        return self.serves[-1]

    @property
    def db(self) -> Database:
        if self._db is None:
            self._db = open_database(self.database_url)
        return self._db

    def acquisitions(self) -> list[dict[str, Any]]:
        rows = self.db.query(
            "SELECT payload FROM events WHERE action = 'cluster.leader.acquired' ORDER BY id"
        )
        return [json.loads(str(r["payload"])) for r in rows]

    def close(self) -> None:
        for serve in self.serves:
            serve.stop()
        if self._db is not None:
            self._db.close()


@pytest.fixture
def pg_database(pg_url: str) -> Iterator[str]:
    """A database of its own in the session's PostgreSQL (the serves create accounts and
    monitoring rows the other tests' ``pg_db`` does not empty)."""
    import psycopg

    name = f"leader_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_url, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    try:
        yield pg_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with psycopg.connect(pg_url, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def leader_sessions(db: Database) -> list[dict[str, Any]]:
    """The leader-lock connections (``application_name`` opsbook-leader) of this database,
    and whether each holds the advisory lock."""
    return db.query(
        "SELECT a.pid, EXISTS (SELECT 1 FROM pg_locks l WHERE l.pid = a.pid"
        " AND l.locktype = 'advisory' AND l.granted"
        " AND ((l.classid::bigint << 32) | l.objid::bigint) = ?) AS holds"
        " FROM pg_stat_activity a WHERE a.application_name = 'opsbook-leader'"
        " AND a.datname = current_database()",
        (LEADER_KEY,),
    )


@pytest.mark.postgres
def test_one_of_two_servers_on_postgresql_leads_and_the_other_takes_over(
    tmp_path: Path, pg_database: str
) -> None:
    replicas = Replicas(tmp_path, pg_database)
    try:
        a = replicas.serve("a")
        wait_until(lambda: replicas.acquisitions(), what="a leader")
        assert [(p["holder"], p["loops"]) for p in replicas.acquisitions()] == [(a.token, LOOPS)]
        b = replicas.serve("b")
        # b has tried: its lock connection is open, and the lock is a's
        wait_until(lambda: len(leader_sessions(replicas.db)) == 2, what="b trying to lead")
        assert sorted(s["holds"] for s in leader_sessions(replicas.db)) == [False, True]
        assert a.leading() == dict.fromkeys(LOOPS, 1.0)
        assert b.leading() == dict.fromkeys(LOOPS, 0.0)
        assert len(replicas.acquisitions()) == 1  # the monitoring loop runs on a only
        states = {
            r["id"]: (r["kind"], r["state"])
            for r in replicas.db.query("SELECT id, kind, state FROM workers")
        }
        assert states == {a.token: ("serve", "alive"), b.token: ("serve", "alive")}

        assert a.stop() == 0
        wait_until(lambda: len(replicas.acquisitions()) == 2, what="b taking over")
        assert replicas.acquisitions()[1]["holder"] == b.token
        wait_until(lambda: b.leading() == dict.fromkeys(LOOPS, 1.0), what="b's metrics")
        row = replicas.db.one("SELECT state FROM workers WHERE id = ?", (a.token,))
        assert row == {"state": "stopped"}
    finally:
        replicas.close()


def test_a_second_server_on_one_sqlite_file_does_not_lead(tmp_path: Path) -> None:
    replicas = Replicas(tmp_path, None)
    try:
        a = replicas.serve("a")
        wait_until(lambda: replicas.acquisitions(), what="a leader")
        b = replicas.serve("b")
        lock_file = tmp_path / "ws" / ".opsbook" / f"opsbook.leader-{LEADER_KEY:x}.lock"
        assert lock_file.exists()
        assert a.leading() == dict.fromkeys(LOOPS, 1.0)
        assert b.leading() == dict.fromkeys(LOOPS, 0.0)
        assert [p["holder"] for p in replicas.acquisitions()] == [a.token]
        assert replicas.db.one("SELECT COUNT(*) AS n FROM workers") == {"n": 0}  # no cluster

        assert a.stop() == 0
        wait_until(lambda: len(replicas.acquisitions()) == 2, what="b taking over")
        assert replicas.acquisitions()[1]["holder"] == b.token
        wait_until(lambda: b.leading() == dict.fromkeys(LOOPS, 1.0), what="b's metrics")
    finally:
        replicas.close()
