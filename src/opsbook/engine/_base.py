"""What the engine's modules share: the outcome of driving an execution, execution ids,
the owner token of the process driving one, and the engine's limits."""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import psutil

from opsbook.engine.states import State

if TYPE_CHECKING:
    from opsbook.db import Database

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


def epoch_now_sql(db: Database) -> str:
    """A SQL expression for the database's clock in epoch seconds (ADR 0017 §4: heartbeats and
    leases are judged on one clock, never a host's)."""
    if db.dialect == "postgresql":
        return "EXTRACT(EPOCH FROM clock_timestamp())"
    return "((julianday('now') - 2440587.5) * 86400.0)"


def owner_alive(owner: str | None, *, db: Database | None = None) -> bool:
    """Whether the process ``owner`` (an :func:`owner_token`) still drives its runs.

    With ``db`` and a ``workers`` row for it (an ``opsbook worker`` or a replicated
    ``opsbook serve``): dead once the row is ``dead``/``stopped`` or its lease ran out on the
    database clock, or, on this host, once its pid is gone. Without a row: on this host, whether
    the pid lives; on another host it cannot be told, so it counts as alive (the safe side)."""
    if not owner:
        return False
    try:
        host, pid, started = owner.rsplit(":", 2)
    except ValueError:
        return False
    if db is not None:
        row = db.one(
            "SELECT state, CASE WHEN heartbeat_at + lease_seconds < "  # noqa: S608
            f"{epoch_now_sql(db)} THEN 1 ELSE 0 END AS expired FROM workers WHERE id = ?",
            (owner,),
        )
        if row is not None and (row["state"] in ("dead", "stopped") or int(row["expired"])):
            return False
    if host != socket.gethostname():
        return True  # another machine, no lapsed lease: we cannot tell, so assume alive
    return _pid_alive(pid, started)


def owner_host(owner: str | None) -> str | None:
    """The host part of an owner token."""
    if not owner or owner.count(":") < 2:
        return None
    return owner.rsplit(":", 2)[0]


def _pid_alive(pid: str, started: str) -> bool:
    try:
        proc = psutil.Process(int(pid))
        return int(proc.create_time()) == int(started) and proc.status() != psutil.STATUS_ZOMBIE
    except (psutil.Error, ValueError):
        return False
