"""Evidence packs an auditor can check without opsbook: JSON lines, a Markdown summary, a
SHA-256 manifest (``sha256sum -c``) and a stdlib-only script that recomputes the chain."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from opsbook.audit._verify import verify
from opsbook.db import Database

VERIFY_SCRIPT = '''#!/usr/bin/env python3
"""Recompute the opsbook audit chain in events.jsonl. Standard library only.

hash = sha256("|".join([prev_hash, id, ts, actor, action, subject, execution_id or "",
                        payload_digest])), payload_digest = sha256(payload as stored).
Exit 0 when every record links and recomputes, 1 otherwise (naming the first bad record).
"""
import hashlib, json, sys

def sha(text):
    return hashlib.sha256(text.encode("utf-8")).hexdigest()

prev = None
expected = None
count = 0
with open(sys.argv[1] if len(sys.argv) > 1 else "events.jsonl", encoding="utf-8") as fh:
    for n, line in enumerate(fh, 1):
        r = json.loads(line)
        if expected is not None and r["id"] != expected:
            sys.exit(f"record {expected} is missing (found {r['id']} on line {n})")
        if prev is not None and r["prev_hash"] != prev:
            sys.exit(f"record {r['id']} does not link to the record before it")
        if sha(r["payload"]) != r["payload_digest"]:
            sys.exit(f"record {r['id']}: payload was altered")
        material = "|".join([r["prev_hash"], str(r["id"]), r["ts"], r["actor"], r["action"],
                             r["subject"], r["execution_id"] or "", r["payload_digest"]])
        if sha(material) != r["hash"]:
            sys.exit(f"record {r['id']}: contents were altered")
        prev, expected = r["hash"], r["id"] + 1
        count += 1
print(f"ok: {count} records verify (ids up to {expected - 1 if expected else 0})")
'''


@dataclass(frozen=True)
class ExportResult:
    out_dir: Path
    records: int
    chain_ok: bool
    files: tuple[str, ...]


def export(*, db: Database, out_dir: Path, since: str | None, until: str | None) -> ExportResult:
    """Write the records with ``since <= ts < until`` (ISO 8601, UTC) to ``out_dir``."""
    report = verify(db=db)
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
    rows = db.query(sql, params)
    out_dir.mkdir(parents=True, exist_ok=True)
    events_path = out_dir / "events.jsonl"
    with events_path.open("w", encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n")
    actions = Counter(str(r["action"]) for r in rows)
    actors = Counter(str(r["actor"]) for r in rows)
    executions = sorted({str(r["execution_id"]) for r in rows if r["execution_id"]})
    lines = [
        "# opsbook evidence pack",
        "",
        f"- Period: {since or 'beginning'} to {until or 'now'} (UTC)",
        f"- Records: {len(rows)}" + (f" (ids {rows[0]['id']}–{rows[-1]['id']})" if rows else ""),
        f"- Whole-chain verification at export: {'OK' if report.ok else 'FAILED'}"
        + ("" if report.ok else f" — {report.problem}"),
        f"- Executions touched: {len(executions)}",
        "",
        "## Check it yourself",
        "",
        "```sh",
        "sha256sum -c manifest.sha256     # files are as exported",
        "python3 verify_chain.py events.jsonl   # every record links and recomputes",
        "```",
        "",
        "Each record's `hash` is SHA-256 of `prev_hash|id|ts|actor|action|subject|"
        "execution_id|payload_digest`, and `payload_digest` is SHA-256 of `payload`. The first "
        "record's `prev_hash` anchors this pack to the record before the period.",
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
    (out_dir / "SUMMARY.md").write_text("\n".join(lines), encoding="utf-8")
    (out_dir / "verify_chain.py").write_text(VERIFY_SCRIPT, encoding="utf-8")
    names = ("events.jsonl", "SUMMARY.md", "verify_chain.py")
    manifest = "".join(
        f"{hashlib.sha256((out_dir / n).read_bytes()).hexdigest()}  {n}\n" for n in names
    )
    (out_dir / "manifest.sha256").write_text(manifest, encoding="utf-8")
    return ExportResult(out_dir, len(rows), report.ok, (*names, "manifest.sha256"))
