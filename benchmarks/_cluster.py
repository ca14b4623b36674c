"""Real parts for the scale-out benchmarks: a PostgreSQL server (as an unprivileged user when
run as root), a redis-server broker (the tests' RedisServer), and `opsbook worker` processes."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from _common import OPSBOOK, ROOT

from opsbook.sandbox.config import free_port
from opsbook.sandbox.pgcluster import give, pg_bin, prefix

sys.path.insert(0, str(ROOT))
from tests.cluster.conftest import RedisServer

FAST_CLUSTER_ENV = {
    "OPSBOOK_WORKER_HEARTBEAT": "1",
    "OPSBOOK_WORKER_LEASE": "10",
    "OPSBOOK_REDISPATCH_AFTER": "5",
}


@contextmanager
def postgres() -> Iterator[str]:
    """A PostgreSQL 15 server with its default durability settings; yields its URL."""
    base = Path(tempfile.mkdtemp(prefix="opsbook-bench-pg-"))
    base.chmod(0o755)
    give(base)
    data, port = base / "data", free_port()
    run = prefix()
    subprocess.run(
        [*run, pg_bin("initdb"), "-D", str(data), "-U", "opsbook", "--auth=trust", "-E", "UTF8"],
        check=True,
        capture_output=True,
    )
    options = f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c max_connections=200"
    subprocess.run(
        [
            *run,
            pg_bin("pg_ctl"),
            "-D",
            str(data),
            "-l",
            str(base / "log"),
            "-w",
            "-o",
            options,
            "start",
        ],
        check=True,
        capture_output=True,
    )
    try:
        subprocess.run(
            [
                *run,
                pg_bin("createdb"),
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
                "-U",
                "opsbook",
                "opsbook",
            ],
            check=True,
            capture_output=True,
        )
        yield f"postgresql://opsbook@127.0.0.1:{port}/opsbook"
    finally:
        subprocess.run(
            [*run, pg_bin("pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
            check=False,
            capture_output=True,
        )
        shutil.rmtree(base, ignore_errors=True)


@contextmanager
def redis() -> Iterator[str]:
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    directory = Path(tempfile.mkdtemp(prefix="opsbook-bench-redis-"))
    if os.geteuid() == 0:
        shutil.chown(directory, user="nobody")
    with RedisServer(binary, directory, free_port()) as server:
        try:
            yield server.url
        finally:
            shutil.rmtree(directory, ignore_errors=True)


class Workers:
    """`opsbook worker` processes on one workspace, stopped (SIGTERM, then SIGKILL) on exit."""

    def __init__(self, *, workspace: Path, env: dict[str, str]) -> None:
        self.workspace = workspace
        self.env = {**os.environ, **FAST_CLUSTER_ENV, **env, "OPSBOOK_WORKSPACE": str(workspace)}
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(
        self, *, name: str, queues: tuple[str, ...] = ("default",), concurrency: int = 1
    ) -> None:
        args = [*OPSBOOK, "worker", "--name", name, "--concurrency", str(concurrency)]
        for q in queues:
            args += ["--queue", q]
        log = (self.workspace / f"{name}.log").open("ab")
        self.procs.append(
            subprocess.Popen(
                args, env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=self.workspace
            )
        )

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 20
        for p in self.procs:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.procs.clear()

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
