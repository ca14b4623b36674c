"""pgBackRest for the sandbox ledger on PostgreSQL (issue 13; ADR 0015 says why pgBackRest).

One stanza, ``ledger``, one repository per environment in ``.opsbook/backups/<env>/pgbackrest``
(encrypted with aes-256-cbc, compressed with zstd, full retention 2 by default). The
configuration file (``<data_dir>/pg/pgbackrest.conf``) carries no secret: the cipher pass is the
secret ``backup-encryption-key`` handed to each command (and to the PostgreSQL server, whose
``archive_command`` pushes every WAL segment) in the environment, never written beside the
backups. Commands run as the PostgreSQL user when opsbook runs as root."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

from opsbook.errors import OpsbookError, UsageError
from opsbook.sandbox import pgcluster

STANZA = "ledger"
CONF = "pgbackrest.conf"
CIPHER_ENV = "PGBACKREST_REPO1_CIPHER_PASS"


class BackRestError(OpsbookError):
    """A pgBackRest command that failed (exit 1): its message names what."""


def binary() -> str:
    import shutil  # noqa: PLC0415

    found = shutil.which("pgbackrest")
    if not found:
        raise UsageError(
            "pgBackRest is not installed",
            hint="apt-get install pgbackrest (the sandbox's PostgreSQL backups use it)",
        )
    return found


def conf_path(data_dir: Path) -> Path:
    return data_dir / pgcluster.PG_DIR / CONF


def cipher_env(key: bytes) -> dict[str, str]:
    return {CIPHER_ENV: key.hex()}


def archive_command(data_dir: Path) -> str:
    return f"{binary()} --config={conf_path(data_dir)} --stanza={STANZA} archive-push %p"


def write_config(
    *,
    data_dir: Path,
    repo: Path,
    pg_path: Path,
    port: int,
    retention_full: int = 2,
) -> Path:
    """The configuration for the current primary (rewritten on failover)."""
    work = data_dir / pgcluster.PG_DIR / "pgbackrest"
    for sub in ("lock", "log", "spool"):
        (work / sub).mkdir(parents=True, exist_ok=True)
        pgcluster.give(work / sub)
    pgcluster.give(work)
    repo.mkdir(parents=True, exist_ok=True)
    repo.parent.chmod(repo.parent.stat().st_mode | 0o011)
    pgcluster.give(repo)
    conf = conf_path(data_dir)
    conf.write_text(
        "\n".join(
            [
                "# written by opsbook: no secret here (the cipher pass comes from the environment)",
                "[global]",
                f"repo1-path={repo}",
                "repo1-cipher-type=aes-256-cbc",
                f"repo1-retention-full={retention_full}",
                "compress-type=zst",
                "compress-level=1",
                "start-fast=y",
                "archive-check=y",
                "process-max=2",
                f"lock-path={work / 'lock'}",
                f"log-path={work / 'log'}",
                f"spool-path={work / 'spool'}",
                "log-level-console=warn",
                "log-level-stderr=error",
                "log-level-file=info",
                "job-retry=0",
                "",
                f"[{STANZA}]",
                f"pg1-path={pg_path}",
                f"pg1-port={port}",
                f"pg1-socket-path={pgcluster.socket_dir(data_dir)}",
                f"pg1-user={pgcluster.SUPERUSER}",
                "",
            ]
        ),
        encoding="utf-8",
    )
    pgcluster.give(conf)
    return conf


def run(
    data_dir: Path,
    key: bytes,
    *args: str,
    timeout: float = 1800,
    repo: Path | None = None,
) -> str:
    """``pgbackrest --config=… --stanza=ledger ARGS``; its stdout, or BackRestError."""
    argv = [*pgcluster.prefix(), binary(), f"--config={conf_path(data_dir)}", f"--stanza={STANZA}"]
    if repo is not None:
        argv.append(f"--repo1-path={repo}")
    argv += list(args)
    import os  # noqa: PLC0415

    try:
        done = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, **cipher_env(key)},
            cwd="/",
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise BackRestError(f"pgbackrest {args[0]} did not finish within {timeout:g}s") from None
    if done.returncode != 0:
        lines = [ln for ln in (done.stderr + done.stdout).splitlines() if ln.strip()]
        raise BackRestError(
            f"pgbackrest {args[0]} failed (exit {done.returncode}): "
            + (" | ".join(lines[-4:]) or "no output")
        )
    return done.stdout


def ensure_stanza(data_dir: Path, key: bytes) -> None:
    """Create the stanza unless the repository already has it (info's status 1 and 3 are a
    missing stanza)."""
    try:
        code = info(data_dir, key).get("status", {}).get("code")
    except BackRestError:
        code = None
    if code not in (0, 2):  # 0 ok, 2 no valid backup yet
        run(data_dir, key, "stanza-create", timeout=120)


def info(data_dir: Path, key: bytes, *, repo: Path | None = None) -> dict[str, Any]:
    out = run(data_dir, key, "info", "--output=json", timeout=60, repo=repo)
    data = json.loads(out or "[]")
    return data[0] if data else {}


def backup(data_dir: Path, key: bytes, *, kind: str = "full") -> dict[str, Any]:
    """Take a backup (full, diff or incr); the new backup's entry from ``info``."""
    if kind not in ("full", "diff", "incr"):
        raise UsageError(f"unknown backup type {kind!r}", field="--type", hint="full, diff or incr")
    out = run(data_dir, key, "backup", f"--type={kind}", "--log-level-console=info")
    label = next(
        (ln.rsplit("=", 1)[1].strip() for ln in out.splitlines() if "new backup label" in ln),
        None,
    )
    found = [b for b in info(data_dir, key).get("backup", []) if b["label"] == label]
    if not found:
        raise BackRestError(f"pgbackrest backup reported success but lists no backup {label}")
    return dict(found[-1])


def restore(
    data_dir: Path,
    key: bytes,
    *,
    target_dir: Path,
    label: str | None = None,
    target: tuple[str, str] | None = None,
    repo: Path | None = None,
    timeout: float = 1800,
) -> float:
    """Restore into an empty ``target_dir`` (owned by the PostgreSQL user); seconds taken.

    ``target``: (``time``|``xid``|``name``, value) for a point in time, else the backup's
    consistent end (``immediate``)."""
    target_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    pgcluster.give(target_dir)
    args = ["restore", f"--pg1-path={target_dir}", "--archive-mode=off"]
    if label:
        args.append(f"--set={label}")
    if target is None:
        args += ["--type=immediate", "--target-action=promote"]
    else:
        args += [f"--type={target[0]}", f"--target={target[1]}", "--target-action=promote"]
    if repo is not None:
        args.append(f"--repo1-path={repo}")
    t0 = time.perf_counter()
    run(data_dir, key, *args, timeout=timeout)
    return time.perf_counter() - t0


def verify_repo(
    data_dir: Path, key: bytes, *, repo: Path | None = None, label: str | None = None
) -> list[str]:
    """``pgbackrest verify``: every file's checksum in the repository (``label``: that backup
    and what it references); the problems. (verify exits 0 whatever it finds: its text output
    says ``status: error``.)"""
    args = ["verify", "--output=text"]
    if label:
        args.append(f"--set={label}")
    try:
        out = run(data_dir, key, *args, timeout=1800, repo=repo)
    except BackRestError as exc:
        return [str(exc)]
    if "status: error" not in out:
        return []
    lines = [ln.strip() for ln in out.splitlines()]
    found = [ln for ln in lines if ln and not ln.startswith(("stanza:", "status:"))]
    return ["pgbackrest verify: " + "; ".join(found)]
