"""Forensic snapshots with a chain of custody (issue 14, PCI DSS 12.10): the service's logs, the
process list and a consistent copy of the ledger database, copied into
``.opsbook/evidence/<id>/`` with a manifest of SHA-256 digests, recorded in ``custody_records``
(who took it, when, for which execution and ticket) and in the audit trail (the manifest's
digest), so that a changed byte is found by :func:`verify`. Each hand-off is appended to the
record and audited."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from opsbook import audit
from opsbook.errors import NotFoundError, ValidationError

if TYPE_CHECKING:
    from opsbook.db import Database

MANIFEST = "manifest.json"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _z(when: datetime) -> str:
    return when.isoformat(timespec="seconds").replace("+00:00", "Z")


def _processes(status: dict[str, Any]) -> list[dict[str, Any]]:
    import psutil  # noqa: PLC0415

    out = []
    for svc in status.get("services", []):
        for pod in svc.get("pods") or []:
            pid = pod.get("pid")
            entry: dict[str, Any] = {"service": svc.get("name"), "pod": pod.get("name"), "pid": pid}
            try:
                p = psutil.Process(int(pid))
                with p.oneshot():
                    entry |= {
                        "cmdline": p.cmdline(),
                        "rss_bytes": p.memory_info().rss,
                        "started": p.create_time(),
                        "connections": len(p.net_connections()),
                    }
            except (psutil.Error, TypeError, ValueError):
                entry["gone"] = True
            out.append(entry)
    return out


def take_snapshot(
    db: Database,
    *,
    evidence_dir: Path,
    data_dir: Path,
    status: dict[str, Any],
    service: str,
    environment: str,
    actor: str,
    ticket: str | None = None,
    execution_id: str | None = None,
    ledger_path: Path | None = None,
) -> dict[str, Any]:
    """Copy the evidence, hash it, record the custody; the record (with ``path``)."""
    stamp = datetime.now(UTC)
    sid = f"fs-{stamp:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"
    out = evidence_dir / sid
    out.mkdir(parents=True, mode=0o700)
    logs = data_dir / "logs"
    for name in (f"{service}.log", f"{service}.console.log", "supervisor.log"):
        if (logs / name).is_file():
            shutil.copy2(logs / name, out / name)
    if (data_dir / "chaos.jsonl").is_file():
        shutil.copy2(data_dir / "chaos.jsonl", out / "chaos.jsonl")
    (out / "processes.json").write_text(json.dumps(_processes(status), indent=1, default=str))
    ledger = ledger_path or data_dir / "ledger.db"
    if ledger.is_file():  # a consistent copy while the services keep writing (online backup)
        src = sqlite3.connect(f"file:{ledger}?mode=ro", uri=True)
        dst = sqlite3.connect(out / "ledger.db")
        try:
            src.backup(dst)
        finally:
            dst.close()
            src.close()
    files = {
        p.name: {"sha256": _sha256(p), "bytes": p.stat().st_size}
        for p in sorted(out.iterdir())
        if p.is_file()
    }
    manifest = {
        "snapshot": sid,
        "service": service,
        "environment": environment,
        "taken_by": actor,
        "taken_at": _z(stamp),
        "ticket": ticket,
        "execution": execution_id,
        "files": files,
    }
    text = json.dumps(manifest, indent=1, sort_keys=True)
    (out / MANIFEST).write_text(text)
    for p in out.iterdir():
        os.chmod(p, 0o400)
    digest = hashlib.sha256(text.encode()).hexdigest()
    with db.transaction():
        db.execute(
            "INSERT INTO custody_records (kind, subject, environment, path, sha256, manifest,"
            " taken_by, taken_at, execution_id, ticket, handoffs)"
            " VALUES ('forensic-snapshot', ?, ?, ?, ?, ?, ?, ?, ?, ?, '[]')",
            (service, environment, str(out), digest, text, actor, _z(stamp), execution_id, ticket),
        )
        audit.record(
            db=db,
            actor=actor,
            action="security.evidence.taken",
            subject=f"evidence:{sid}",
            payload={
                "service": service,
                "ticket": ticket,
                "manifest_sha256": digest,
                "files": {k: v["sha256"] for k, v in files.items()},
            },
            execution_id=execution_id,
        )
    return {"id": sid, "path": str(out), "manifest_sha256": digest, "files": files}


def verify(path: Path, db: Database | None = None) -> dict[str, Any]:
    """Recompute every digest (and, with ``db``, the manifest's against its custody record)."""
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        raise ValidationError(f"{path} has no {MANIFEST}", field="path")
    text = manifest_path.read_text()
    manifest = json.loads(text)
    problems = []
    for name, want in manifest["files"].items():
        f = path / name
        if not f.is_file():
            problems.append(f"{name}: missing")
        elif _sha256(f) != want["sha256"]:
            problems.append(f"{name}: SHA-256 differs from the manifest")
    extra = {p.name for p in path.iterdir()} - set(manifest["files"]) - {MANIFEST}
    problems += [f"{n}: not in the manifest" for n in sorted(extra)]
    recorded = None
    if db is not None:
        row = db.one("SELECT sha256 FROM custody_records WHERE path = ?", (str(path),))
        recorded = row["sha256"] if row else None
        if recorded is None:
            problems.append("no custody record for this snapshot")
        elif hashlib.sha256(text.encode()).hexdigest() != recorded:
            problems.append(f"{MANIFEST}: differs from the custody record")
    return {
        "snapshot": manifest["snapshot"],
        "ok": not problems,
        "files": len(manifest["files"]),
        "problems": problems,
    }


def hand_off(
    db: Database, *, snapshot: str, to: str, actor: str, note: str | None = None
) -> dict[str, Any]:
    """Record that the evidence passed from ``actor`` to ``to`` (chain of custody)."""
    row = db.one("SELECT * FROM custody_records WHERE path LIKE ?", (f"%{snapshot}",))
    if row is None:
        raise NotFoundError(f"no evidence {snapshot}")
    handoffs = json.loads(row["handoffs"])
    handoffs.append({"from": actor, "to": to, "at": _z(datetime.now(UTC)), "note": note})
    with db.transaction():
        db.execute(
            "UPDATE custody_records SET handoffs = ? WHERE id = ?",
            (json.dumps(handoffs), row["id"]),
        )
        audit.record(
            db=db,
            actor=actor,
            action="security.evidence.handed-off",
            subject=f"evidence:{snapshot}",
            payload={"to": to, "note": note},
        )
    return {**row, "handoffs": handoffs}
