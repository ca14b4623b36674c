"""Starting, stopping and inspecting the sandbox from the outside (the CLI, tests, benchmarks).

``up`` starts the supervisor detached (``python -m opsbook.sandbox.supervisor DIR --daemon``:
a double fork into its own process group) and waits for its record to say ``ready`` or
``failed``; ``down`` asks it to stop, then kills whatever of the record still runs and checks
every recorded pid is gone.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from opsbook.errors import ConflictError, OpsbookError
from opsbook.sandbox.config import (
    PortChange,
    SandboxConfig,
    config_from_environment,
    set_ledger_url,
    settle_ports,
    write_back,
)
from opsbook.sandbox.control import Control, not_up
from opsbook.sandbox.state import (
    CONFIG_FILE,
    alive,
    read_state,
    recorded_processes,
    remove_state,
    supervisor_alive,
)
from opsbook.workspace import Workspace, load_environment


@dataclass(frozen=True)
class UpResult:
    config: SandboxConfig
    status: dict[str, Any]
    elapsed: float
    port_changes: list[PortChange] = field(default_factory=list)
    already_up: bool = False
    cleaned_stale: int = 0


@dataclass(frozen=True)
class DownResult:
    was_running: bool
    stopped: list[dict[str, Any]]
    elapsed: float
    killed: int = 0
    stale: bool = False


def load_config(*, workspace: Workspace, env_name: str = "sandbox") -> SandboxConfig:
    env = load_environment(workspace, env_name)
    return config_from_environment(
        workspace=workspace.root, env_name=env.name, env_path=env.path, data=env.data
    )


def data_dir_of(*, workspace: Workspace, env_name: str = "sandbox") -> Path:
    return load_config(workspace=workspace, env_name=env_name).data_path


def control(*, workspace: Workspace, env_name: str = "sandbox") -> Control:
    return Control.for_data_dir(data_dir_of(workspace=workspace, env_name=env_name))


def _kill_leftovers(state: dict[str, Any]) -> int:
    """SIGKILL every recorded process that still runs (identity checked); how many."""
    killed = 0
    for proc in recorded_processes(state):
        if alive(proc["pid"], proc["create_time"]):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(proc["pid"], signal.SIGKILL)
                killed += 1
    return killed


def _wait_gone(procs: list[dict[str, Any]], timeout: float) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        left = [p for p in procs if alive(p["pid"], p["create_time"])]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.02)


def up(
    *,
    workspace: Workspace,
    env_name: str = "sandbox",
    strict_ports: bool = False,
    reuse: bool = False,
    db: str | None = None,
) -> UpResult:
    """Start the sandbox and wait until every service is healthy.

    ``db``: ``postgres`` runs the ledger on PostgreSQL clusters of the sandbox's own (written
    to the environment file as ``sandbox.db``), ``sqlite`` on the embedded file."""
    started = time.perf_counter()
    if db is not None:
        _switch_database(workspace, env_name, db)
    config = load_config(workspace=workspace, env_name=env_name)
    data_dir = config.data_path
    data_dir.mkdir(parents=True, exist_ok=True)
    state = read_state(data_dir)
    cleaned = 0
    if state is not None and supervisor_alive(state):
        if reuse and state.get("phase") == "ready":
            status = Control.for_data_dir(data_dir).call("status")
            return UpResult(config, status, time.perf_counter() - started, already_up=True)
        sup = state.get("supervisor") or {}
        raise ConflictError(
            f"the sandbox is already up (supervisor pid {sup.get('pid')}, {state.get('phase')})",
            hint="see it with `opsbook sandbox status`; restart it with `opsbook sandbox down` "
            "then `up` (or pass --reuse to accept a running sandbox)",
        )
    if state is not None:
        cleaned = _kill_leftovers(state)
        remove_state(data_dir)
    config, changes = settle_ports(config, strict=strict_ports)
    write_back(config, changes)
    if config.managed_postgres:
        from opsbook.backup import pgsetup  # noqa: PLC0415

        try:
            config = pgsetup.up(workspace, config)
        except OpsbookError:
            pgsetup.down(config)
            raise
        from opsbook.sandbox.pgcluster import listener_url, load_registry  # noqa: PLC0415

        set_ledger_url(Path(config.env_path), listener_url(load_registry(config.data_path)))
    (data_dir / CONFIG_FILE).write_text(config.to_json(), encoding="utf-8")
    logs = data_dir / "logs"
    logs.mkdir(exist_ok=True)
    with (logs / "supervisor.console.log").open("ab") as console:
        first = subprocess.Popen(
            [sys.executable, "-m", "opsbook.sandbox.supervisor", str(data_dir), "--daemon"],
            stdin=subprocess.DEVNULL,
            stdout=console,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=config.workspace,
        )
    first.wait(timeout=30)
    state = _wait_for_boot(data_dir, timeout=config.startup_timeout + 15)
    if state.get("phase") != "ready":
        message = str(state.get("error") or "the sandbox did not start")
        _stop_failed(data_dir, state)
        _stop_postgres(config)
        raise OpsbookError(
            f"the sandbox did not start: {message}", hint=f"logs: {logs}; nothing was left running"
        )
    status = Control(int(state["control"]["port"]), str(state["control"]["token"])).call("status")
    return UpResult(config, status, time.perf_counter() - started, changes, cleaned_stale=cleaned)


def _switch_database(workspace: Workspace, env_name: str, db: str) -> None:
    from opsbook.sandbox.config import set_database  # noqa: PLC0415

    env = load_environment(workspace, env_name)
    state = read_state(data_dir_of(workspace=workspace, env_name=env_name))
    if state is not None and supervisor_alive(state):
        current = str((env.data.get("sandbox") or {}).get("db") or "sqlite")
        if current != db:
            raise ConflictError(
                f"the sandbox is up on its current ledger database; it cannot switch to {db}",
                hint="opsbook sandbox down, then opsbook sandbox up --db " + db,
            )
    set_database(env.path, db)


def _stop_postgres(config: SandboxConfig) -> None:
    """Stop the sandbox's own PostgreSQL clusters, if it runs any."""
    if not config.managed_postgres:
        return
    from opsbook.backup import pgsetup  # noqa: PLC0415

    pgsetup.down(config)


def _wait_for_boot(data_dir: Path, *, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    seen_alive = False
    while time.monotonic() < deadline:
        state = read_state(data_dir)
        if state is not None:
            phase = state.get("phase")
            if phase in ("ready", "failed"):
                return state
            if supervisor_alive(state):
                seen_alive = True
            elif seen_alive or phase in ("stopping", "stopped"):
                return {
                    **state,
                    "phase": "failed",
                    "error": "the supervisor exited during start-up:\n" + _console_tail(data_dir),
                }
        time.sleep(0.025)
    state = read_state(data_dir) or {}
    return {
        **state,
        "phase": "failed",
        "error": f"no answer within {timeout:g}s:\n" + _console_tail(data_dir),
    }


def _console_tail(data_dir: Path) -> str:
    from opsbook.sandbox.logtail import tail_lines  # noqa: PLC0415

    lines = tail_lines(data_dir / "logs" / "supervisor.console.log", 10)
    return "\n".join(f"  {line}" for line in lines) or "  (no output)"


def _stop_failed(data_dir: Path, state: dict[str, Any]) -> None:
    procs = recorded_processes(state)
    left = _wait_gone(procs, 5.0)  # a failed boot tears itself down
    if left:
        _kill_leftovers(state)
        _wait_gone(procs, 2.0)
    remove_state(data_dir)


def down(*, workspace: Workspace, env_name: str = "sandbox") -> DownResult:
    """Stop every sandbox process; verified by pid (and creation time)."""
    started = time.perf_counter()
    data_dir = data_dir_of(workspace=workspace, env_name=env_name)
    state = read_state(data_dir)
    if state is None:
        _stop_postgres(load_config(workspace=workspace, env_name=env_name))
        return DownResult(False, [], time.perf_counter() - started)
    procs = recorded_processes(state)
    was_alive = supervisor_alive(state)
    if was_alive:
        with contextlib.suppress(OpsbookError):
            Control(int(state["control"]["port"]), str(state["control"]["token"])).call(
                "shutdown", timeout=5
            )
        _wait_gone(procs[:1], 1.8)
        latest = read_state(data_dir) or state
        procs += [p for p in recorded_processes(latest) if p not in procs]
    killed = _kill_leftovers({"processes": procs})
    if was_alive:
        pgid = int((state.get("supervisor") or {}).get("pgid") or 0)
        if pgid > 1 and pgid != os.getpgid(0):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)
    left = _wait_gone(procs, 2.0)
    _stop_postgres(load_config(workspace=workspace, env_name=env_name))
    if left:
        raise OpsbookError(
            "some sandbox processes did not stop: "
            + ", ".join(f"{p['role']} pid {p['pid']}" for p in left),
            hint="stop them by hand (kill -9 PID) and run `opsbook sandbox down` again",
        )
    remove_state(data_dir)
    return DownResult(True, procs, time.perf_counter() - started, killed, stale=not was_alive)


def status(*, workspace: Workspace, env_name: str = "sandbox") -> dict[str, Any]:
    """The live status, or an error saying the sandbox is not up (or its record is stale)."""
    data_dir = data_dir_of(workspace=workspace, env_name=env_name)
    state = read_state(data_dir)
    if state is None or not supervisor_alive(state):
        raise not_up(data_dir, state)
    result: dict[str, Any] = Control.for_data_dir(data_dir).call("status")
    return result
