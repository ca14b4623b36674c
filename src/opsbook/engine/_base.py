"""What the engine's modules share: the outcome of driving an execution, execution ids,
the owner token of the process driving one, and the engine's limits."""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass
from typing import Any

import psutil

from opsbook.engine.states import State

MAX_STEP_RUNS = 1000  # per execution: a goto loop that never ends fails instead of spinning
RECORD_PID_AFTER = 0.2  # seconds a step's process runs before its pid is journaled
MAX_DEPTH = 5  # child procedures (decide run / on_failure run) nested at most this deep
APPROVAL_POLL = 0.5
ABORT_POLL = 0.5  # seconds between checks for an abort requested elsewhere


@dataclass(frozen=True)
class Outcome:
    execution_id: str
    state: State
    state_name: str
    reason: str | None = None
    waiting_step: str | None = None

    @property
    def parked(self) -> bool:
        return self.state in (State.WAITING, State.CRASHED)

    def to_dict(self) -> dict[str, Any]:
        return {
            "execution_id": self.execution_id,
            "state": str(self.state),
            "state_name": self.state_name,
            "reason": self.reason,
            "waiting_step": self.waiting_step,
        }


def new_execution_id() -> str:
    return uuid.uuid4().hex[:12]


def owner_token() -> str:
    """host:pid:process-start-time — identifies the live process that owns a running execution."""
    proc = psutil.Process()
    return f"{socket.gethostname()}:{os.getpid()}:{int(proc.create_time())}"


def owner_alive(owner: str | None) -> bool:
    if not owner:
        return False
    try:
        host, pid, started = owner.rsplit(":", 2)
    except ValueError:
        return False
    if host != socket.gethostname():
        return True  # another machine: we cannot tell, so assume alive (safe side)
    try:
        proc = psutil.Process(int(pid))
        return int(proc.create_time()) == int(started) and proc.status() != psutil.STATUS_ZOMBIE
    except (psutil.Error, ValueError):
        return False
