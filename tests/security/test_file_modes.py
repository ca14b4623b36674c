"""Issue 16 §4: the state database and its WAL were created 0644 (password and token hashes, the
audit journal). New ones are 0600 in a 0700 directory, like the signing keys, and
`opsbook doctor` fails (exit 1) on a looser database, WAL, key file or secrets directory, with
the chmod that fixes it. Real files, real modes, the real CLI."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

from opsbook.config import Settings
from opsbook.db import open_database
from opsbook.notify.keys import workspace_key
from opsbook.workspace import Workspace
from opsbook.workspace.doctor import run_checks
from opsbook.workspace.init import init_workspace
from tests.conftest import free_port

OPSBOOK = [sys.executable, "-m", "opsbook.cli.main"]


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _doctor(root: Path, **env: str) -> tuple[int, dict[str, dict[str, str]]]:
    res = subprocess.run(
        [*OPSBOOK, "doctor", "--json"],
        capture_output=True,
        text=True,
        env={**os.environ, "OPSBOOK_WORKSPACE": str(root), **env},
        check=False,
        timeout=120,
    )
    assert "Traceback" not in res.stderr, res.stderr
    return res.returncode, {c["name"]: c for c in json.loads(res.stdout)["checks"]}


def test_new_database_wal_and_state_dir_are_private(tmp_path: Path) -> None:
    old = os.umask(0o022)  # the usual umask, which gave 0644 before
    try:
        root = tmp_path / "ws"
        init_workspace(target=root)
        state = root / ".opsbook"
        assert _mode(state) == 0o700
        db_path = state / "opsbook.db"
        db = open_database(f"sqlite:///{db_path}")
        try:
            with db.transaction():
                db.execute("CREATE TABLE IF NOT EXISTS t (x INTEGER)")
                db.execute("INSERT INTO t VALUES (1)")
            wal, shm = Path(f"{db_path}-wal"), Path(f"{db_path}-shm")
            assert wal.exists() and shm.exists()  # open while the connection is
            assert {p.name: _mode(p) for p in (db_path, wal, shm)} == {
                "opsbook.db": 0o600,
                "opsbook.db-wal": 0o600,
                "opsbook.db-shm": 0o600,
            }
        finally:
            db.close()
        workspace_key(state)
        assert _mode(state / "incident-signing.key") == 0o600

        elsewhere = tmp_path / "var" / "lib" / "opsbook" / "state.db"  # OPSBOOK_DATABASE_URL
        open_database(f"sqlite:///{elsewhere}").close()
        assert (_mode(elsewhere.parent), _mode(elsewhere)) == (0o700, 0o600)
    finally:
        os.umask(old)


def test_doctor_fails_on_loose_modes_and_says_the_chmod(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    init_workspace(target=root)
    state = root / ".opsbook"
    checks = {
        c.name: c
        for c in run_checks(
            workspace=Workspace.load(root), settings=Settings.from_env({}), env_name="sandbox"
        )
    }
    assert checks["file permissions"].status == "ok", checks["file permissions"]
    db_path = state / "opsbook.db"
    key = state / "incident-signing.key"
    workspace_key(state)
    secrets = state / "secrets"
    secrets.mkdir(mode=0o755)
    secrets.chmod(0o755)
    (secrets / "db_password").write_text("hunter2")
    for path, mode in ((db_path, 0o644), (key, 0o640), (secrets / "db_password", 0o604)):
        path.chmod(mode)

    code, by_name = _doctor(root)
    assert code == 1
    check = by_name["file permissions"]
    assert check["status"] == "failed"
    assert f"{db_path} is 0644" in check["detail"]
    assert f"{key} is 0640" in check["detail"]
    assert f"{secrets} is 0755" in check["detail"]
    assert check["hint"].startswith("chmod 600 ")
    assert str(db_path) in check["hint"] and str(secrets / "db_password") in check["hint"]
    assert f"chmod 700 {secrets}" in check["hint"]

    subprocess.run(check["hint"], shell=True, check=True)  # the fix, as given
    code, by_name = _doctor(root)
    assert by_name["file permissions"]["status"] == "ok", by_name["file permissions"]

    state.chmod(0o755)  # an older version's state directory: a warning, not a failure
    _, by_name = _doctor(root)
    assert by_name["file permissions"]["status"] == "warning"
    assert by_name["file permissions"]["hint"] == f"chmod 700 {state}"


def test_doctor_checks_a_database_outside_the_workspace(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    init_workspace(target=root)
    db_path = tmp_path / "data" / "ops.db"
    url = f"sqlite:///{db_path}"
    open_database(url).close()
    db_path.chmod(0o664)
    _, by_name = _doctor(root, OPSBOOK_DATABASE_URL=url)
    assert by_name["file permissions"]["status"] == "failed"
    assert by_name["file permissions"]["hint"] == f"chmod 600 {db_path}"


def test_serve_says_at_start_that_the_database_is_readable_by_others(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    init_workspace(target=root)
    db_path = root / ".opsbook" / "opsbook.db"
    open_database(f"sqlite:///{db_path}").close()
    db_path.chmod(0o644)  # made by an older version
    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [*OPSBOOK, "serve", "--port", str(port), "--no-schedules"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "OPSBOOK_WORKSPACE": str(root)},
        )
        try:
            deadline = time.monotonic() + 60
            while "opsbook console:" not in log.read_text():
                assert proc.poll() is None, log.read_text()
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    text = log.read_text()
    assert f"warning: readable by group or others: {db_path} is 0644" in text
    assert f"fix: chmod 600 {db_path}" in text
    assert _mode(db_path) == 0o644  # told, not changed behind the operator's back
