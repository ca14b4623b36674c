"""Replica processes as the supervisor sees them: start one on a socket it binds itself (so no
port can be stolen between choosing and listening), watch it, stop it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from opsbook.sandbox.proxy import http_request

STOP_GRACE = 1.0


def bind_listener(port: int = 0) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(1024)
    sock.set_inheritable(True)
    return sock


@dataclass
class Replica:
    """One process: a service replica (``service`` set) or the payment network."""

    name: str
    role: str  # the service name, or "payment-network"
    port: int
    version: str = ""
    revision: int = 0
    bug: bool = False
    pid: int = 0
    create_time: float = 0.0
    started_at: float = field(default_factory=time.time)
    state: str = "starting"  # starting, running, crashed, terminating, stopped
    exit_code: int | None = None
    ready: bool = False
    last_health: str = ""
    cpu: float = 0.0
    rss: int = 0
    process: asyncio.subprocess.Process | None = None
    watcher: asyncio.Task[None] | None = None
    ps: Any = None  # psutil.Process, for cpu/memory

    @property
    def alive(self) -> bool:
        return self.state in ("starting", "running")

    def record(self) -> dict[str, Any]:
        return {
            "pid": self.pid,
            "create_time": self.create_time,
            "role": self.role,
            "name": self.name,
            "port": self.port,
        }

    def view(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "pid": self.pid,
            "port": self.port,
            "state": self.state,
            "ready": self.ready,
            "version": self.version,
            "revision": self.revision,
            "exit_code": self.exit_code,
            "uptime": round(time.time() - self.started_at, 1) if self.alive else 0,
            "cpu": round(self.cpu, 1),
            "memory_mb": round(self.rss / 2**20, 1),
            "health": self.last_health,
        }


def replica_name(service: str) -> str:
    return f"{service}-{uuid.uuid4().hex[:5]}"


async def spawn(
    replica: Replica,
    spec: dict[str, Any],
    sock: socket.socket,
    *,
    log_dir: Path,
    on_exit: Callable[[Replica, int], None],
) -> None:
    """Start the process serving on ``sock``; ``on_exit`` runs when it ends."""
    import psutil  # noqa: PLC0415 - the supervisor imports it anyway

    spec = {**spec, "fd": sock.fileno(), "parent": os.getpid()}
    log_dir.mkdir(parents=True, exist_ok=True)
    with open(log_dir / f"{replica.role}.console.log", "ab") as console:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "opsbook.sandbox.serve",
            json.dumps(spec),
            pass_fds=[sock.fileno()],
            stdin=asyncio.subprocess.DEVNULL,
            stdout=console,
            stderr=asyncio.subprocess.STDOUT,
        )
    replica.process = proc
    replica.pid = proc.pid
    try:
        replica.ps = psutil.Process(proc.pid)
        replica.create_time = replica.ps.create_time()
        replica.ps.cpu_percent(None)
    except psutil.Error:
        replica.create_time = time.time()

    async def watch() -> None:
        code = await proc.wait()
        on_exit(replica, code)

    replica.watcher = asyncio.create_task(watch())


async def wait_answering(replica: Replica, *, timeout: float, healthy: bool) -> bool:
    """Poll ``/health`` until it answers (any status, or 200 with ``healthy``); False on timeout
    or if the process ends first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not replica.alive:
            return False
        try:
            status, body = await http_request(replica.port, "/health", timeout=1.0)
        except (OSError, TimeoutError):
            await asyncio.sleep(0.05)
            continue
        replica.ready = status == 200
        if replica.state == "starting":
            replica.state = "running"
        if status == 200 or not healthy:
            return True
        missing = _schema_missing(body)
        if missing:  # a release without its schema change never becomes healthy: say so now
            replica.last_health = missing
            return False
        await asyncio.sleep(0.1)
    return False


def _schema_missing(body: bytes) -> str:
    try:
        check = json.loads(body).get("checks", {}).get("schema") or {}
    except (ValueError, AttributeError):
        return ""
    return str(check.get("error") or "") if check.get("status") == "DOWN" else ""


async def stop(replica: Replica, *, grace: float = STOP_GRACE) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds; returns when the process is gone."""
    proc = replica.process
    if proc is None or proc.returncode is not None:
        replica.state = "stopped" if replica.state != "crashed" else replica.state
        return
    replica.state = "terminating"
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(proc.wait(), grace)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
    replica.state = "stopped"
    replica.ready = False


def sample(replica: Replica) -> None:
    """CPU (percent since the last sample) and resident memory of a live replica."""
    if replica.ps is None or not replica.alive:
        replica.cpu, replica.rss = 0.0, 0
        return
    with contextlib.suppress(Exception):
        replica.cpu = float(replica.ps.cpu_percent(None))
        replica.rss = int(replica.ps.memory_info().rss)


def sample_memory(replica: Replica) -> None:
    """Resident memory now (status asks for it; CPU needs an interval, so the probe loop)."""
    if replica.ps is not None and replica.alive:
        with contextlib.suppress(Exception):
            replica.rss = int(replica.ps.memory_info().rss)
