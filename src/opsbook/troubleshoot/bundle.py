"""Diagnostic bundles (issue 12): a tar with the diagnosis, the facts of each source and a
``MANIFEST.json`` giving each file's SHA-256 and size, so it can be attached to an incident and
checked later (``opsbook diagnose --verify PATH``). Content is redacted with the workspace's
secrets before it is written."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path
from typing import Any

from opsbook.errors import ValidationError

MANIFEST = "MANIFEST.json"


def write_bundle(path: Path, *, diagnosis: dict[str, Any], redact: Any | None = None) -> Path:
    """Write the bundle; ``redact`` (str -> str) is applied to every file's text."""
    files: dict[str, bytes] = {}

    def add(name: str, obj: Any) -> None:
        text = json.dumps(obj, indent=2, sort_keys=True, default=str)
        files[name] = (redact(text) if redact else text).encode("utf-8")

    add("diagnosis.json", {k: v for k, v in diagnosis.items() if k != "facts"})
    for source, facts in (diagnosis.get("facts") or {}).items():
        add(f"facts/{source}.json", facts)
    manifest = {
        "diagnosis": diagnosis.get("id"),
        "files": {
            name: {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
            for name, data in sorted(files.items())
        },
    }
    files[MANIFEST] = json.dumps(manifest, indent=2, sort_keys=True).encode("utf-8")
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w") as tar:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o600
            tar.addfile(info, io.BytesIO(data))
    return path


def verify_bundle(path: Path) -> dict[str, Any]:
    """Check every file against the manifest: ``{"ok", "files", "problems"}``."""
    try:
        with tarfile.open(path, "r") as tar:
            return _check(tar, path)
    except (OSError, tarfile.TarError) as exc:
        raise ValidationError(
            f"{path} is not a diagnostic bundle: {exc}",
            field="path",
            hint="opsbook diagnose writes them",
        ) from None


def _check(tar: tarfile.TarFile, path: Path) -> dict[str, Any]:
    members = {m.name: m for m in tar.getmembers() if m.isfile()}
    if MANIFEST not in members:
        raise ValidationError(
            f"{path} has no {MANIFEST}", field="path", hint="not a diagnostic bundle"
        )

    def read(name: str) -> bytes:
        fh = tar.extractfile(members[name])
        return fh.read() if fh is not None else b""

    manifest = json.loads(read(MANIFEST))
    problems: list[str] = []
    listed = manifest.get("files", {})
    for name, want in listed.items():
        if name not in members:
            problems.append(f"{name}: missing")
            continue
        data = read(name)
        if hashlib.sha256(data).hexdigest() != want.get("sha256") or len(data) != want.get("size"):
            problems.append(f"{name}: SHA-256 does not match the manifest")
    for name in members:
        if name != MANIFEST and name not in listed:
            problems.append(f"{name}: not in the manifest")
    return {
        "ok": not problems,
        "diagnosis": manifest.get("diagnosis"),
        "files": len(listed),
        "problems": problems,
    }
