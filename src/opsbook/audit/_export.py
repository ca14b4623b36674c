"""Evidence packs an auditor can check without opsbook: JSON lines, a Markdown summary, the
signed checkpoints and the public key, a SHA-256 manifest (``sha256sum -c``) and a stdlib-only
script that recomputes the chain and checks the pack is whole (``verify_chain.py``)."""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from opsbook.audit._log import canonical_json
from opsbook.audit._packscript import VERIFY_SCRIPT
from opsbook.audit._verify import VerifyReport, verify
from opsbook.audit._witness import (
    WitnessConfig,
    iter_lines,
    key_id,
    load_key,
    public_bytes,
    sign_extra,
)
from opsbook.db import Database
from opsbook.errors import UsageError

FILES = (
    "events.jsonl",
    "checkpoints.jsonl",
    "audit-key.pub",
    "SUMMARY.md",
    "verify_chain.py",
    "manifest.sha256",
)


@dataclass(frozen=True)
class ExportResult:
    out_dir: Path
    records: int
    chain_ok: bool
    files: tuple[str, ...]
    report: VerifyReport | None = None


def check_out_dir(out_dir: Path, *, force: bool) -> None:
    """Refuse (exit 2, nothing written) an ``--out`` that is a file, cannot be written, or is a
    directory that already holds files, unless ``force`` (which overwrites a pack's files)."""
    hint = "choose a new directory, or pass --force to overwrite the pack in it"
    if out_dir.exists() or out_dir.is_symlink():
        if not out_dir.is_dir():
            raise UsageError(
                f"--out {out_dir} is an existing file, not a directory",
                hint="choose a directory that does not exist yet (or an empty one)",
                field="--out",
            )
        if any(out_dir.iterdir()) and not force:
            raise UsageError(
                f"--out {out_dir} is a directory that is not empty", hint=hint, field="--out"
            )
        target = out_dir
    else:
        target = out_dir.parent
        while not target.exists() and target != target.parent:
            target = target.parent
        if not target.is_dir():
            raise UsageError(f"--out {out_dir}: {target} is a file, not a directory", field="--out")
    if not os.access(target, os.W_OK | os.X_OK):
        raise UsageError(
            f"--out {out_dir} cannot be written: {target} is not writable by this user",
            hint="choose a directory you can write to",
            field="--out",
        )


def _select(db: Database, since: str | None, until: str | None) -> list[dict[str, Any]]:
    clauses, params = [], []
    if since:
        clauses.append("ts >= ?")
        params.append(since)
    if until:
        clauses.append("ts < ?")
        params.append(until)
    where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
    # The clauses are fixed strings; the values are bound parameters.
    sql = (
        "SELECT id, ts, actor, action, subject, execution_id, payload, payload_digest,"  # noqa: S608
        " prev_hash, hash FROM events" + where + " ORDER BY id"
    )
    return db.query(sql, params)


def _pack_checkpoints(
    cfg: WitnessConfig, rows: list[dict[str, Any]], export_line: dict[str, Any]
) -> str:
    """The witness lines for records in the pack, then the export checkpoint."""
    lo, hi = (int(rows[0]["id"]), int(rows[-1]["id"])) if rows else (1, 0)
    kept: list[str] = []
    for _, raw in iter_lines(cfg.witness):
        try:
            line = json.loads(raw)
            cid = int(line["id"])
        except (ValueError, KeyError, TypeError):
            continue  # `audit verify` reports bad witness lines; the pack carries good ones
        if lo <= cid <= hi and line.get("signer") != "export":
            kept.append(raw)
    kept.append(canonical_json(export_line))
    return "".join(line + "\n" for line in kept)


def export(
    *,
    db: Database,
    out_dir: Path,
    since: str | None,
    until: str | None,
    witness: WitnessConfig | None = None,
    force: bool = False,
    allow_unwitnessed_tail: float | None = None,
) -> ExportResult:
    """Write the records with ``since <= ts < until`` (ISO 8601, UTC) to ``out_dir``.

    With a ``witness``, the whole chain is verified against its signed checkpoints first and,
    only if it verifies, an *export checkpoint* is signed and appended: the pack's first id,
    the boundary ``prev_hash``, its record count and its last record's id and hash. A pack of
    a broken chain carries no export checkpoint, so its ``verify_chain.py`` fails."""
    check_out_dir(out_dir, force=force)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"--out {out_dir} cannot be created: {exc}", field="--out") from exc
    report = verify(db=db, witness=witness, allow_unwitnessed_tail=allow_unwitnessed_tail)
    rows = _select(db, since, until)
    export_line: dict[str, Any] | None = None
    public: bytes | None = None
    if witness is not None and report.ok:
        key = load_key(witness, create=True)
        assert key is not None
        public = public_bytes(key)
        head = db.one("SELECT last_id, last_hash FROM audit_head WHERE id = 1")
        last_id, last_hash = (
            (int(rows[-1]["id"]), str(rows[-1]["hash"]))
            if rows
            else (int(head["last_id"]) if head else 0, str(head["last_hash"]) if head else "")
        )
        export_line = sign_extra(
            cfg=witness,
            fields={
                "id": last_id,
                "hash": last_hash,
                "signer": "export",
                "first_id": int(rows[0]["id"]) if rows else None,
                "first_prev_hash": str(rows[0]["prev_hash"]) if rows else None,
                "records": len(rows),
                "full_period": since is None,
                "since": since,
                "until": until,
            },
        )
    try:
        _write(out_dir, rows, since, until, report, witness, export_line, public)
    except OSError as exc:
        raise UsageError(f"--out {out_dir} cannot be written: {exc}", field="--out") from exc
    return ExportResult(out_dir, len(rows), report.ok, FILES, report)


def _write(
    out_dir: Path,
    rows: list[dict[str, Any]],
    since: str | None,
    until: str | None,
    report: VerifyReport,
    witness: WitnessConfig | None,
    export_line: dict[str, Any] | None,
    public: bytes | None,
) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    with (out_dir / "events.jsonl").open("w", encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n")
    cps = (
        _pack_checkpoints(witness, rows, export_line)
        if witness is not None and export_line is not None
        else ""
    )
    (out_dir / "checkpoints.jsonl").write_text(cps, encoding="utf-8")
    fingerprint = key_id(public) if public else None
    (out_dir / "audit-key.pub").write_text(
        (public.hex() + f"  ed25519 key {fingerprint}\n") if public else "", encoding="ascii"
    )
    (out_dir / "SUMMARY.md").write_text(
        _summary(rows, since, until, report, fingerprint, export_line is not None),
        encoding="utf-8",
    )
    (out_dir / "verify_chain.py").write_text(VERIFY_SCRIPT, encoding="utf-8")
    names = FILES[:-1]
    manifest = "".join(
        f"{hashlib.sha256((out_dir / n).read_bytes()).hexdigest()}  {n}\n" for n in names
    )
    (out_dir / "manifest.sha256").write_text(manifest, encoding="utf-8")


def _summary(
    rows: list[dict[str, Any]],
    since: str | None,
    until: str | None,
    report: VerifyReport,
    fingerprint: str | None,
    signed: bool,
) -> str:
    actions = Counter(str(r["action"]) for r in rows)
    actors = Counter(str(r["actor"]) for r in rows)
    executions = sorted({str(r["execution_id"]) for r in rows if r["execution_id"]})
    lines = [
        "# opsbook evidence pack",
        "",
        f"- Period: {since or 'beginning'} to {until or 'now'} (UTC)"
        + (" — full period: the pack starts at record 1" if since is None else ""),
        f"- Records: {len(rows)}" + (f" (ids {rows[0]['id']}–{rows[-1]['id']})" if rows else ""),
        f"- Whole-chain verification at export: {'OK' if report.ok else 'FAILED'}"
        + ("" if report.ok else f" — {report.problem}")
        + (f" (against {report.checkpoints_checked} signed checkpoints)" if signed else ""),
        f"- Executions touched: {len(executions)}",
        (
            f"- Signed by audit key `{fingerprint}` (Ed25519; `audit-key.pub`): compare it with"
            " the fingerprint the operator publishes (`opsbook audit verify`)"
            if signed
            else "- NOT SIGNED: no export checkpoint (the chain did not verify, or no witness"
            " is configured); `verify_chain.py` will fail"
        ),
        "",
        "## Check it yourself",
        "",
        "```sh",
        "sha256sum -c manifest.sha256     # files are as exported",
        "python3 verify_chain.py events.jsonl   # chain, signatures, and the pack is whole",
        "```",
        "",
        "Each record's `hash` is SHA-256 of `prev_hash|id|ts|actor|action|subject|"
        "execution_id|payload_digest`, and `payload_digest` is SHA-256 of `payload`. The first "
        "record's `prev_hash` anchors this pack to the record before the period.",
        "",
        "`checkpoints.jsonl` holds the signed checkpoints of the records in the pack and the "
        "*export checkpoint*, which signs the pack's first id, boundary `prev_hash`, record "
        "count and last record. `manifest.sha256` alone proves nothing against someone who "
        "can rewrite the pack (they regenerate it); the signatures do. `verify_chain.py` "
        "checks them with the `cryptography` package when it is importable and with its own "
        "pure-Python RFC 8032 code otherwise (`--pure` forces that); it prints which.",
        "",
        "## Actions",
        "",
        "| action | count |",
        "|---|---|",
        *[f"| {a} | {n} |" for a, n in sorted(actions.items())],
        "",
        "## Actors",
        "",
        "| actor | records |",
        "|---|---|",
        *[f"| {a} | {n} |" for a, n in sorted(actors.items())],
        "",
    ]
    return "\n".join(lines)
