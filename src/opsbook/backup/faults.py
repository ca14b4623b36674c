"""The backup and DR faults for drills in the sandbox (issue 13); the supervisor's
:mod:`opsbook.sandbox.chaos_ops` applies and ends them, each caught by a backup check:

- ``backup-job-stopped``: the daily backup of ``opsbook serve`` silently does nothing while the
  fault is active (a cron job that died: no log line, no catalogue row, no error); the record in
  ``faults.json`` is the whole effect (:func:`job_stopped`). ``backup maximum age`` fails once
  the last good backup is older than ``[backups] max_age``. Clearing it lets the next pass back
  up again (the day is not claimed while the job is stopped).
- ``corrupted-backup``: bytes flipped in the newest good backup in its *primary* location (the
  ``.obk`` file on SQLite; on PostgreSQL one data file of the newest pgBackRest backup set), the
  file's times kept (bit rot at rest: the DR mirror does not copy it over the good copy). What
  was damaged is returned, so the chaos log records it. Clearing ends the fault's record only:
  a corrupted backup stays corrupted. ``opsbook backups verify`` names it and marks it bad.
- ``lagging-replica``: WAL replay paused on every DR replica (``pg_wal_replay_pause()``);
  clear or expiry resumes it. ``DR replica lag`` fails once the lag passes
  ``[backups] replica_max_lag``.
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from opsbook.errors import OpsbookError, UsageError
from opsbook.sandbox import pgcluster
from opsbook.sandbox.faults import BACKUP_FAULTS, read_faults

if TYPE_CHECKING:
    from opsbook.sandbox.faults import ActiveFault
    from opsbook.sandbox.host import Host
    from opsbook.workspace import Workspace

__all__ = ["BACKUP_FAULTS", "apply", "corrupt_newest", "job_stopped", "reset", "undo"]

JOB_STOPPED = "backup-job-stopped"
CORRUPTED = "corrupted-backup"
LAGGING = "lagging-replica"
#: how many bytes are flipped, from the middle of the file
FLIPPED = 16
_LABEL = re.compile(r"^\d{8}-\d{6}F(_\d{8}-\d{6}[DI])?$")


def job_stopped(workspace: Workspace, environment: str) -> bool:
    """Whether ``backup-job-stopped`` is active on the environment's running sandbox (False
    when the environment is not a sandbox, or its supervisor is not running: the record a
    stopped sandbox left behind is no fault)."""
    from opsbook.sandbox.lifecycle import load_config  # noqa: PLC0415
    from opsbook.sandbox.state import read_state, supervisor_alive  # noqa: PLC0415

    try:
        data_dir = load_config(workspace=workspace, env_name=environment).data_path
    except OpsbookError:
        return False
    if not any(f.fault == JOB_STOPPED and not f.expired() for f in read_faults(data_dir)):
        return False
    state = read_state(data_dir)
    return state is not None and supervisor_alive(state)


# -- corrupted-backup ----------------------------------------------------------------------


def _same(a: Path, b: Path) -> bool:
    """Whether two files hold the same bytes (a copy that still matches its twin)."""
    try:
        if a.stat().st_size != b.stat().st_size:
            return False
        with a.open("rb") as fa, b.open("rb") as fb:
            while True:
                x, y = fa.read(1 << 20), fb.read(1 << 20)
                if x != y:
                    return False
                if not x:
                    return True
    except OSError:
        return False


def _flip(path: Path) -> dict[str, Any]:
    """Flip :data:`FLIPPED` bytes in the middle of ``path`` in place, keeping its times."""
    st = path.stat()
    count = min(FLIPPED, st.st_size)
    offset = max((st.st_size - count) // 2, 0)
    with path.open("r+b") as f:
        f.seek(offset)
        data = f.read(count)
        f.seek(offset)
        f.write(bytes(b ^ 0xFF for b in data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    return {"file": str(path), "offset": offset, "bytes": count}


def _newest_sqlite(primary: Path, dr: Path) -> tuple[str, Path] | None:
    files = sorted(primary.glob("bk-*.obk"), key=lambda p: (p.stat().st_mtime_ns, p.name))
    for path in reversed(files):
        if _same(path, dr / path.name):
            return path.stem, path
    return None


def _set_key(label: str) -> str:
    return label.rsplit("_", 1)[-1]  # the newest timestamp in the label


def _newest_pg(repo: Path, dr_repo: Path) -> tuple[str, Path] | None:
    """The newest backup set whose manifest still matches the DR mirror's, and in it the
    largest data file (a relation under ``base/``, else any file) that still matches too."""
    sets = repo / "backup" / "ledger"
    if not sets.is_dir():
        return None
    labels = sorted((p.name for p in sets.iterdir() if _LABEL.match(p.name)), key=_set_key)
    for label in reversed(labels):
        rel = Path("backup") / "ledger" / label
        if not _same(repo / rel / "backup.manifest", dr_repo / rel / "backup.manifest"):
            continue
        data = repo / rel / "pg_data"
        for where in (data / "base", data):
            files = [
                p
                for p in where.rglob("*")
                if p.is_file() and _same(p, dr_repo / p.relative_to(repo))
            ]
            if files:
                return label, max(files, key=lambda p: p.stat().st_size)
    return None


def corrupt_newest(workspace: Workspace, environment: str) -> dict[str, Any]:
    """Damage the newest good backup of the environment in its primary location; what was
    damaged: ``backup`` (the backup id on SQLite, the pgBackRest label on PostgreSQL),
    ``repository`` (the primary location's directory: the backups' on SQLite, pgBackRest's on
    PostgreSQL), ``path`` (the file changed, relative to the repository), ``file`` (the same,
    absolute), ``offset`` and ``bytes`` (where in the file, and how many bytes were flipped)."""
    from opsbook.backup.paths import locations, pg_repo, pg_repo_dr  # noqa: PLC0415
    from opsbook.sandbox.lifecycle import load_config  # noqa: PLC0415

    cfg = load_config(workspace=workspace, env_name=environment)
    if cfg.managed_postgres:
        repo = pg_repo(workspace, environment)
        found = _newest_pg(repo, pg_repo_dr(workspace, environment))
        kind = "pgbackrest-set"
    else:
        repo, dr = locations(workspace, environment)
        found = _newest_sqlite(repo, dr)
        kind = "sqlite-backup"
    if found is None:
        raise UsageError(
            f"{environment} has no good backup to corrupt (in its primary location, matching"
            " its DR copy)",
            hint="take one first: opsbook backups take --verify",
        )
    name, path = found
    return {
        "backup": name,
        "kind": kind,
        "location": "primary",
        "repository": str(repo),
        "path": path.relative_to(repo).as_posix(),
        **_flip(path),
    }


# -- lagging-replica -----------------------------------------------------------------------


def _replicas(data_dir: Path) -> list[pgcluster.Cluster]:
    reg = pgcluster.load_registry(data_dir)
    return [c for c in reg.clusters.values() if c.role == "replica"]


def pause_replay(data_dir: Path) -> list[str]:
    """Pause WAL replay on every replica; their names (a UsageError when there is none)."""
    replicas = _replicas(data_dir)
    if not replicas:
        raise UsageError(
            "lagging-replica needs the DR replica of the ledger on PostgreSQL, and this"
            " sandbox has none",
            field="fault",
            hint="run the ledger on PostgreSQL (opsbook sandbox up --db postgres), then set up"
            " the DR region: opsbook dr setup",
        )
    for c in replicas:
        pgcluster.sql(c, "SELECT pg_wal_replay_pause()", db="postgres")
    return [c.name for c in replicas]


def resume_replay(data_dir: Path) -> list[str]:
    """Resume WAL replay on every replica that is still one; the names resumed."""
    done = []
    for c in _replicas(data_dir):
        with contextlib.suppress(pgcluster.PgError):  # stopped, or promoted meanwhile
            pgcluster.sql(c, "SELECT pg_wal_replay_resume()", db="postgres")
            done.append(c.name)
    return done


# -- in the supervisor ---------------------------------------------------------------------


def _workspace(sup: Host) -> Workspace:
    from opsbook.workspace import Workspace  # noqa: PLC0415

    return Workspace.load(Path(sup.config.workspace))


async def apply(sup: Host, fault: ActiveFault) -> dict[str, Any]:
    """Apply a backup fault (before it is recorded: an impossible one raises UsageError and
    leaves no record); what to add to the chaos log."""
    import asyncio  # noqa: PLC0415

    if fault.fault == CORRUPTED:
        damaged = await asyncio.to_thread(corrupt_newest, _workspace(sup), sup.config.env_name)
        return {"damaged": damaged}
    if fault.fault == LAGGING:
        return {"paused": await asyncio.to_thread(pause_replay, sup.data_dir)}
    return {}  # backup-job-stopped: its record is the fault


async def undo(sup: Host, fault: ActiveFault) -> dict[str, Any]:
    """End a backup fault's effect. A corrupted backup stays corrupted: only its record ends."""
    import asyncio  # noqa: PLC0415

    if fault.fault == LAGGING:
        return {"resumed": await asyncio.to_thread(resume_replay, sup.data_dir)}
    return {}


async def reset(sup: Host, leftovers: list[ActiveFault]) -> None:
    """At boot: resume replay a previous run's lagging-replica left paused (a replica that
    restarted replays anyway; one that is not up yet is skipped)."""
    import asyncio  # noqa: PLC0415

    if any(f.fault == LAGGING for f in leftovers):
        with contextlib.suppress(OpsbookError):
            await asyncio.to_thread(resume_replay, sup.data_dir)
