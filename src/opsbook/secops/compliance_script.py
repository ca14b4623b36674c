# ruff: noqa: E501
"""The stdlib-only script a compliance pack carries (``verify_compliance.py``): it checks every
file against ``manifest.sha256``, runs ``audit/verify_chain.py`` on the audit records, and checks
that the SHA-256 of the report, ``COMPLIANCE.md`` and this script are the ones the signed chain
recorded (``security.compliance.reported``). `opsbook compliance verify` runs this same code (not
the pack's copy of it) with opsbook's own ``verify_chain.py`` (not the pack's)."""

VERIFY_SCRIPT = r'''#!/usr/bin/env python3
"""Verify an opsbook compliance pack offline: python3 verify_compliance.py [PACK_DIR]"""
import hashlib, json, os, subprocess, sys


def check(base, chain_script=None):
    problems = []
    listed = {}
    try:
        with open(os.path.join(base, "manifest.sha256"), encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    digest, name = line.rstrip("\n").split("  ", 1)
                    listed[name] = digest
    except (OSError, ValueError) as exc:
        return [f"manifest.sha256: unreadable ({exc})"]
    for name in ("compliance.json", "COMPLIANCE.md", "verify_compliance.py", "audit/events.jsonl"):
        if name not in listed:
            problems.append(f"{name}: not in the manifest")
    for name, digest in sorted(listed.items()):
        path = os.path.join(base, name)
        try:
            with open(path, "rb") as fh:
                actual = hashlib.sha256(fh.read()).hexdigest()
        except OSError:
            problems.append(f"{name}: missing")
            continue
        if actual != digest:
            problems.append(f"{name}: SHA-256 differs from the manifest")
    if problems:
        return problems
    audit_dir = os.path.join(base, "audit")
    run = subprocess.run(
        [sys.executable, chain_script or os.path.join(audit_dir, "verify_chain.py"), os.path.join(audit_dir, "events.jsonl")],
        capture_output=True, text=True,
    )
    if run.returncode != 0:
        problems.append("audit chain: " + (run.stdout + run.stderr).strip())
        return problems
    with open(os.path.join(base, "compliance.json"), "rb") as fh:
        report_digest = hashlib.sha256(fh.read()).hexdigest()
    payload = None
    with open(os.path.join(audit_dir, "events.jsonl"), encoding="utf-8") as fh:
        for line in fh:
            r = json.loads(line)
            if r.get("action") == "security.compliance.reported":
                payload = json.loads(r["payload"]) if isinstance(r.get("payload"), str) else (r.get("payload") or {})
    if payload is None:
        problems.append("audit/events.jsonl: no security.compliance.reported record")
        return problems
    if payload.get("sha256") != report_digest:
        problems.append("compliance.json: its SHA-256 is not the one the audit trail recorded")
    # newer packs record every file written before the audit export, not only the report
    for name, digest in sorted((payload.get("files") or {}).items()):
        if name == "compliance.json":
            continue
        with open(os.path.join(base, name), "rb") as fh:
            if hashlib.sha256(fh.read()).hexdigest() != digest:
                problems.append(f"{name}: its SHA-256 is not the one the audit trail recorded")
    return problems


def main(argv):
    base = argv[1] if len(argv) > 1 else os.path.dirname(os.path.abspath(__file__))
    problems = check(base)
    if problems:
        for p in problems:
            print("FAIL: " + p)
        return 1
    print("ok: every file matches the manifest, the audit chain verifies, and the report is the one the signed chain recorded")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
'''


def verify_pack(path: str) -> list[str]:
    """Run the script's ``check`` in this process (the trusted copy), with opsbook's own copy of
    the audit export's ``verify_chain.py``, never the pack's."""
    import tempfile  # noqa: PLC0415
    from pathlib import Path  # noqa: PLC0415

    from opsbook.audit._packscript import VERIFY_SCRIPT as CHAIN_SCRIPT  # noqa: PLC0415

    namespace: dict[str, object] = {"__name__": "opsbook_compliance_verify"}
    exec(compile(VERIFY_SCRIPT, "verify_compliance.py", "exec"), namespace)  # noqa: S102
    check = namespace["check"]
    assert callable(check)
    with tempfile.TemporaryDirectory(prefix="opsbook-chain-") as tmp:
        script = Path(tmp) / "verify_chain.py"
        script.write_text(CHAIN_SCRIPT, encoding="utf-8")
        result: list[str] = check(path, str(script))
    return result
