"""Cluster fixtures: a real redis-server for the session (the broker of the worker tests), with
stop/start on the same port for outage tests, and helpers that write minimal execution rows."""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from opsbook.audit._log import utcnow
from opsbook.db import Database
from opsbook.engine._journal import ExecutionRow, create_execution, start_step_run
from opsbook.engine.states import State
from opsbook.sandbox.config import free_port

REDIS_HINT = "apt-get install redis-server"


def _redis_binary() -> str | None:
    found = shutil.which("redis-server")
    if found:
        return found
    return "/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None


def _ping(port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """One redis-server (no persistence) on a fixed 127.0.0.1 port, as ``nobody`` when the
    tests run as root. ``stop()`` and ``start()`` keep the port, so clients reconnect to the
    same URL after an outage; a restarted server is empty, as after a crash."""

    def __init__(self, binary: str, directory: Path, port: int) -> None:
        self.binary = binary
        self.directory = directory
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"
        self.process: subprocess.Popen[bytes] | None = None
        self.log = directory / "redis.log"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, timeout: float = 15.0) -> None:
        if self.running:
            return
        user: dict[str, object] = {}
        if os.geteuid() == 0:
            nobody = pwd.getpwnam("nobody")
            user = {"user": nobody.pw_uid, "group": nobody.pw_gid, "extra_groups": []}
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
                "--logfile",
                str(self.log),
                "--daemonize",
                "no",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            **user,  # type: ignore[call-overload]  # user/group only when root
        )
        deadline = time.monotonic() + timeout
        while not _ping(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
                self.stop()
                raise RuntimeError(f"redis-server did not start on port {self.port}: {log}")
            time.sleep(0.05)

    def stop(self) -> None:
        """Stop it now (SIGKILL: queued messages are lost, as in a crash)."""
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """The session's redis-server (skipped when it is not installed)."""
    binary = _redis_binary()
    if binary is None:
        pytest.skip(f"redis-server is not installed ({REDIS_HINT})")
    directory = Path(tempfile.mkdtemp(prefix="opsbook-redis-"))
    if os.geteuid() == 0:
        shutil.chown(directory, user="nobody")
    server = RedisServer(binary, directory, free_port())
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_url(redis_server: RedisServer) -> str:
    """``redis://127.0.0.1:<port>/0`` of the session's redis-server."""
    return redis_server.url


@pytest.fixture
def redis_outage(redis_server: RedisServer) -> Iterator[RedisServer]:
    """The session's redis-server, for a test that stops and starts it (an outage); it runs
    again after the test, whatever happened."""
    yield redis_server
    redis_server.start()


# -- rows ------------------------------------------------------------------------------------
def run_row(
    db: Database,
    eid: str,
    *,
    owner: str | None,
    state: State = State.RUNNING,
    queue: str | None = None,
    environment: str = "sandbox",
) -> str:
    """A minimal execution row, as the engine writes it (journaled)."""
    now = utcnow()
    create_execution(
        db=db,
        execution=ExecutionRow(
            id=eid,
            parent_id=None,
            runbook_id="rb",
            runbook_path="rb.md",
            runbook_hash="h",
            procedure_id="p",
            environment=environment,
            params={},
            digest="d",
            state=state,
            state_name=state.title(),
            reason=None,
            cursor=0,
            dry_run=False,
            started_by="alice",
            owner=owner,
            created_at=now,
            updated_at=now,
            finished_at=None,
        ),
        actor="alice",
    )
    if queue is not None:
        db.execute("UPDATE executions SET queue = ? WHERE id = ?", (queue, eid))
    return eid


def open_step(db: Database, eid: str, *, step_id: str = "s1", pid: int | None = None) -> None:
    """An open (running) step run, with the process group it started when ``pid``."""
    start_step_run(
        db=db,
        execution_id=eid,
        seq=1,
        step_id=step_id,
        step_index=0,
        kind="sh",
        state=State.RUNNING,
        name="Running",
        actor="alice",
    )
    if pid is not None:
        db.execute("UPDATE step_runs SET pid = ? WHERE execution_id = ? AND seq = 1", (pid, eid))


def token_of(pid: int) -> str:
    """The owner token of a live process (what it would register as)."""
    return f"{socket.gethostname()}:{pid}:{int(psutil.Process(pid).create_time())}"


@contextlib.contextmanager
def child_process() -> Iterator[subprocess.Popen[bytes]]:
    """A real process to stand for a worker (``kill -9`` it to kill the worker)."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


def events_of(db: Database, action: str) -> list[dict[str, Any]]:
    rows = db.query(
        "SELECT actor, subject, payload FROM events WHERE action = ? ORDER BY id", (action,)
    )
    for row in rows:
        row["payload"] = json.loads(str(row["payload"]))
    return rows


def wait_until(
    check: Callable[[], object], *, timeout: float = 20.0, what: str = "condition"
) -> None:
    """Poll ``check()`` until it is true, failing after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)
