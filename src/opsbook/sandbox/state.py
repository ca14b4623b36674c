"""The supervisor's record on disk: ``.opsbook/sandbox/state.json``.

Written (atomically, mode 0600: it holds the control token) by the supervisor after every change;
read by ``opsbook sandbox ...`` to find the supervisor and, when the supervisor is gone, every
process it started. A process is identified by pid *and* creation time, so a recycled pid is
never mistaken for one of ours.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

STATE_FILE = "state.json"
CONFIG_FILE = "config.json"


def state_path(data_dir: Path) -> Path:
    return data_dir / STATE_FILE


def read_state(data_dir: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(state_path(data_dir).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except ValueError:
        return None  # a torn write cannot happen (rename), but a hand-edited file can
    return data if isinstance(data, dict) else None


def write_state(data_dir: Path, state: dict[str, Any]) -> None:
    path = state_path(data_dir)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(state, f, indent=1, default=str)
    tmp.replace(path)


def remove_state(data_dir: Path) -> None:
    state_path(data_dir).unlink(missing_ok=True)


def alive(pid: int, create_time: float) -> bool:
    """Whether the process ``pid`` started at ``create_time`` still runs (not a zombie)."""
    import psutil  # noqa: PLC0415 - deferred: CLI start-up

    try:
        proc = psutil.Process(pid)
        return abs(proc.create_time() - create_time) < 0.05 and (
            proc.status() != psutil.STATUS_ZOMBIE
        )
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def recorded_processes(state: dict[str, Any]) -> list[dict[str, Any]]:
    """Every process in the record: the supervisor first, then its children."""
    out = []
    sup = state.get("supervisor") or {}
    if sup.get("pid"):
        out.append(
            {"pid": int(sup["pid"]), "create_time": float(sup["create_time"]), "role": "supervisor"}
        )
    for proc in state.get("processes") or []:
        out.append(
            {
                "pid": int(proc["pid"]),
                "create_time": float(proc["create_time"]),
                "role": str(proc.get("role", "?")),
            }
        )
    return out


def supervisor_alive(state: dict[str, Any]) -> bool:
    sup = state.get("supervisor") or {}
    return bool(sup.get("pid")) and alive(int(sup["pid"]), float(sup.get("create_time", 0)))
