"""``opsbook doctor``'s audit checks: the chain against the signed checkpoints, and that the
key and the witness exist with safe modes, outside the state directory (docs/audit.md)."""

from __future__ import annotations

import stat
from pathlib import Path

from opsbook.audit._signer import LIVE_TAIL_SECONDS
from opsbook.audit._verify import verify
from opsbook.audit._witness import KEY_SECRET, WitnessConfig, secret_key
from opsbook.db import Database
from opsbook.errors import OpsbookError

#: (name, status, detail, hint), as ``opsbook.workspace.doctor.Check`` takes them.
Row = tuple[str, str, str, str]


def _mode(path: Path) -> int | None:
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return None


def witness_checks(*, db: Database, cfg: WitnessConfig, state_dir: Path) -> list[Row]:
    """Every audit witness check; none raises."""
    try:
        report = verify(db=db, witness=cfg, allow_unwitnessed_tail=LIVE_TAIL_SECONDS)
    except OpsbookError as exc:
        return [("audit checkpoints", "failed", exc.message, exc.hint or "")]
    if report.status == "no-checkpoint" and report.checked:
        rows: list[Row] = [
            (
                "audit checkpoints",
                "warning",
                "no signed checkpoint yet: a database writer could rewrite the chain unnoticed",
                "opsbook audit checkpoint",
            )
        ]
    elif report.ok:
        rows = [
            (
                "audit checkpoints",
                "ok",
                f"{report.checkpoints_checked} signed checkpoint"
                + ("" if report.checkpoints_checked == 1 else "s")
                + (" match" if report.checkpoints_checked != 1 else " matches")
                + (f" (key {report.key_id})" if report.key_id else ""),
                "",
            )
        ]
    else:
        rows = [
            (
                "audit checkpoints",
                "failed",
                str(report.problem),
                "opsbook audit verify; treat it as a security incident",
            )
        ]
    rows.extend(_files(cfg, state_dir))
    return rows


def _files(cfg: WitnessConfig, state_dir: Path) -> list[Row]:
    rows: list[Row] = []
    try:
        from_secret = secret_key(cfg) is not None
    except OpsbookError as exc:
        return [("audit key", "failed", exc.message, exc.hint or "")]
    key_mode = _mode(cfg.key_file)
    if from_secret:
        rows.append(("audit key", "ok", f"the secret {KEY_SECRET}", ""))
    elif key_mode is None:
        rows.append(("audit key", "ok", f"{cfg.key_file} is created on first signing", ""))
    elif key_mode & 0o077:
        rows.append(
            (
                "audit key",
                "failed",
                f"{cfg.key_file} is mode {key_mode:04o}: others can read the signing key",
                f"chmod 600 {cfg.key_file}",
            )
        )
    else:
        rows.append(("audit key", "ok", f"{cfg.key_file} (mode {key_mode:04o})", ""))
    witness_mode = _mode(cfg.witness)
    inside = cfg.witness.resolve().is_relative_to(state_dir.resolve())
    if witness_mode is not None and witness_mode & 0o022:
        rows.append(
            (
                "audit witness",
                "failed",
                f"{cfg.witness} is mode {witness_mode:04o}: others can rewrite it",
                f"chmod go-w {cfg.witness}",
            )
        )
    elif inside:
        rows.append(
            (
                "audit witness",
                "warning",
                f"{cfg.witness} is inside the state directory {state_dir}",
                "set OPSBOOK_AUDIT_WITNESS to a file outside it (ideally on another host)",
            )
        )
    else:
        rows.append(("audit witness", "ok", str(cfg.witness), ""))
    return rows
