"""WAL checkpoints run in a thread of their own, not inside a serving thread's commit."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from opsbook.db import open_database
from opsbook.db.checkpoints import Checkpointer
from opsbook.users import accounts, tokens
from opsbook.workspace.init import init_workspace
from tests.conftest import free_port
from tests.monitoring.test_alerts import payload


def _autocheckpoint(db) -> int:  # type: ignore[no-untyped-def]
    return int(db.raw.execute("PRAGMA wal_autocheckpoint").fetchone()[0])


def test_the_thread_checkpoints_what_the_connection_writes(tmp_path: Path) -> None:
    path = tmp_path / "opsbook.db"
    db = open_database(f"sqlite:///{path}")
    db.raw.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # start from an empty log
    checkpointer = Checkpointer(db, every=0.05)
    checkpointer.start()
    try:
        assert _autocheckpoint(db) == 0  # commits no longer checkpoint themselves
        before = path.stat().st_size
        with db.transaction():
            db.execute("CREATE TABLE filler (x TEXT)")
            for _ in range(300):
                db.execute("INSERT INTO filler VALUES (?)", ("x" * 4000,))
        deadline = time.monotonic() + 10
        while (
            path.stat().st_size <= before + 300 * 4000 or not checkpointer.checkpoints
        ) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert path.stat().st_size > before + 300 * 4000  # the pages reached the database file
        assert checkpointer.checkpoints >= 1
    finally:
        checkpointer.stop()
    assert _autocheckpoint(db) == 1000  # SQLite's default is back
    db.close()


def test_nothing_to_do_for_an_in_memory_database() -> None:
    db = open_database("sqlite:///:memory:")
    checkpointer = Checkpointer(db, every=0.05)
    checkpointer.start()
    assert not checkpointer.active
    checkpointer.stop()
    db.close()


def _wal(path: Path) -> int:
    wal = Path(f"{path}-wal")
    return wal.stat().st_size if wal.exists() else 0


def test_sustained_writes_keep_the_log_bounded(tmp_path: Path) -> None:
    """PASSIVE alone never finishes under a steady stream of commits, so the log only grew.
    Past the limit the thread empties it when it gets the chance; with a writer that never
    lets go (as here) the commit that crosses the backstop empties it itself."""
    path = tmp_path / "opsbook.db"
    db = open_database(f"sqlite:///{path}")
    limit = 256 * 1024
    checkpointer = Checkpointer(db, every=0.01, limit=limit, idle_after=3600)
    checkpointer.start()
    try:
        db.execute("CREATE TABLE filler (x TEXT)")
        peak = 0
        for i in range(3000):  # ~12 MB of log in 3,000 commits, 48 times the limit
            with db.transaction():
                db.execute("INSERT INTO filler VALUES (?)", (f"{i:08d}" + "x" * 4000,))
            peak = max(peak, _wal(path))
        assert peak <= 3 * limit + 64 * 1024  # the backstop (+ one commit), never the 12 MB
        assert db.one("SELECT count(*) AS n FROM filler") == {"n": 3000}
    finally:
        checkpointer.stop()
    db.close()


def test_an_idle_log_is_truncated(tmp_path: Path) -> None:
    path = tmp_path / "opsbook.db"
    db = open_database(f"sqlite:///{path}")
    checkpointer = Checkpointer(db, every=0.02, idle_after=0.1)
    checkpointer.start()
    try:
        with db.transaction():
            db.execute("CREATE TABLE filler (x TEXT)")
            for _ in range(100):
                db.execute("INSERT INTO filler VALUES (?)", ("x" * 4000,))
        assert _wal(path) > 100 * 4000
        deadline = time.monotonic() + 20
        while (_wal(path) or not checkpointer.truncations) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert _wal(path) == 0 and checkpointer.truncations >= 1
        assert db.one("SELECT count(*) AS n FROM filler") == {"n": 100}
    finally:
        checkpointer.stop()
    db.close()


def test_stop_truncates_and_the_last_close_removes_the_files(tmp_path: Path) -> None:
    path = tmp_path / "opsbook.db"
    db = open_database(f"sqlite:///{path}")
    checkpointer = Checkpointer(db, every=3600)  # only the last checkpoint, at stop()
    checkpointer.start()
    with db.transaction():
        db.execute("CREATE TABLE filler (x TEXT)")
        db.execute("INSERT INTO filler VALUES (?)", ("x" * 4000,))
    assert _wal(path) > 0
    checkpointer.stop()
    assert _wal(path) == 0
    db.close()
    assert not Path(f"{path}-wal").exists() and not Path(f"{path}-shm").exists()


def test_a_serving_process_keeps_its_log_small_and_leaves_no_log_behind(tmp_path: Path) -> None:
    """A real `opsbook serve`: webhook deliveries written back to back, then idle (the log is
    emptied), then SIGTERM (the process stops cleanly and the -wal and -shm files are gone)."""
    ws = tmp_path / "ws"
    init_workspace(target=ws)
    with (ws / "opsbook.toml").open("a") as f:  # no probes of the (absent) sandbox
        f.write("\n[monitoring]\nenvironments = []\n")
    path = ws / ".opsbook" / "opsbook.db"
    db = open_database(f"sqlite:///{path}")
    accounts.create_account(
        db=db, actor="t", username="am", roles=["operator"], known=accounts.known_roles()
    )
    _, token = tokens.create_token(db=db, actor="t", username="am", name="t", scopes=["alerts"])
    db.close()
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "opsbook.cli.main", "serve", "--port", str(port), "--no-schedules"],
        env={**os.environ, "OPSBOOK_WORKSPACE": str(ws)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(base + "/api/v1/health").status_code == 200:
                    break
            except httpx.HTTPError:
                assert proc.poll() is None and time.monotonic() < deadline
                time.sleep(0.1)
        peak = 0
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}) as c:
            for n in range(100):
                body = payload(100)
                for a in body["alerts"]:
                    a["fingerprint"] = f"{n:04d}{a['fingerprint']}"
                reply = c.post("/api/v1/alerts/alertmanager", json=body)
                assert reply.status_code == 200, reply.text
                peak = max(peak, _wal(path))
        assert peak <= 64 * 1024 * 1024
        deadline = time.monotonic() + 30
        while _wal(path) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _wal(path) == 0  # idle: emptied
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err.decode()
    assert not Path(f"{path}-wal").exists() and not Path(f"{path}-shm").exists()
    db = open_database(f"sqlite:///{path}")
    assert db.one("SELECT count(*) AS n FROM mon_alerts") == {"n": 100 * 100}
    db.close()
