"""Processes a dead engine left running.

An ``sh`` step runs in its own process group, so it outlives an engine that is killed
(``kill -9``, OOM, a lost VM). The group's leader pid and its start time are stored on the
step run when it starts; when a resume finds that run crashed, whatever is still running in
that group is stopped (SIGTERM, then SIGKILL) before anyone chooses retry, skip or abort, so
a retried step never runs twice at the same time.
"""

from __future__ import annotations

import os
import signal

import psutil

from opsbook.db import Database

GRACE = 2.0  # seconds between SIGTERM and SIGKILL


def record_process(*, db: Database, execution_id: str, seq: int, pid: int) -> None:
    """Remember the process group a step started (called as soon as it is spawned)."""
    try:
        started: float | None = psutil.Process(pid).create_time()
    except psutil.Error:
        started = None
    db.execute(
        "UPDATE step_runs SET pid = ?, pid_started = ? WHERE execution_id = ? AND seq = ?",
        (pid, started, execution_id, seq),
    )


def _members(pgid: int, since: float | None) -> list[psutil.Process]:
    """Live processes of group ``pgid`` started no earlier than the step (a reused pgid of
    an unrelated, older group is never touched)."""
    out = []
    for proc in psutil.process_iter(["create_time"]):
        try:
            if os.getpgid(proc.pid) != pgid:
                continue
            if since is not None and proc.info["create_time"] < since - 1.0:
                continue
            if proc.status() == psutil.STATUS_ZOMBIE:
                continue
        except (OSError, psutil.Error):
            continue
        out.append(proc)
    return out


def stop_leftovers(*, db: Database, execution_id: str, seq: int) -> list[int]:
    """Stop what is still running of a crashed step's process group; the pids stopped."""
    row = db.one(
        "SELECT pid, pid_started FROM step_runs WHERE execution_id = ? AND seq = ?",
        (execution_id, seq),
    )
    if row is None or row["pid"] is None:
        return []
    pgid = int(row["pid"])
    since = float(row["pid_started"]) if row["pid_started"] is not None else None
    members = _members(pgid, since)
    if not members:
        return []
    found = sorted(p.pid for p in members)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pgid, sig)
        except OSError:
            break
        _, alive = psutil.wait_procs(members, timeout=GRACE)
        if not alive:
            break
        members = alive
    return found
