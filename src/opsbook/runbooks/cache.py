"""Parsed runbooks, cached in the workspace's state directory.

Parsing a long runbook (Markdown, YAML, CEL compilation) costs far more than running a short
step, and an operator runs the same file again and again. A parse is stored under
``.opsbook/cache/runbooks/`` keyed by the file's bytes, its path and the parser's own code;
any change to one of them is a miss. Entries are pickles signed with HMAC-SHA256 under a key
that only this workspace's state directory holds, so a file dropped there by anyone who cannot
read that key is never unpickled (ADR 0007). Parse errors are never cached.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import pickle
import secrets
from functools import cache
from pathlib import Path

from opsbook.runbooks.model import Runbook

KEY_FILE = ".key"
MAC_SIZE = 32


@cache
def _salt() -> bytes:
    """The parser's identity: opsbook's version and its parsing modules' modification times."""
    from opsbook import __version__  # noqa: PLC0415

    here = Path(__file__).parent
    stamps = [__version__]
    for module in sorted(here.glob("*.py")):
        try:
            stamps.append(f"{module.name}:{module.stat().st_mtime_ns}")
        except OSError:
            continue
    return "|".join(stamps).encode()


def _key(cache_dir: Path) -> bytes:
    path = cache_dir / KEY_FILE
    try:
        return path.read_bytes()
    except FileNotFoundError:
        pass
    cache_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first
        return path.read_bytes()
    with os.fdopen(fd, "wb") as fh:
        fh.write(key)
    return key


def parse_cached(path: Path, *, cache_dir: Path | None) -> Runbook:
    """:func:`parse_file`, answered from the cache when this exact file was parsed before (a hit
    does not even import the Markdown parser)."""
    if cache_dir is None:
        return _parse(path)
    try:
        data = path.read_bytes()
        key = _key(cache_dir)
    except OSError:
        return _parse(path)  # its error names the problem
    digest = hashlib.sha256(_salt() + b"\0" + str(path.resolve()).encode() + b"\0" + data)
    entry = cache_dir / f"{digest.hexdigest()}.pickle"
    try:
        blob = entry.read_bytes()
    except OSError:
        blob = b""
    if len(blob) > MAC_SIZE:
        mac, body = blob[:MAC_SIZE], blob[MAC_SIZE:]
        if hmac.compare_digest(mac, hmac.new(key, body, hashlib.sha256).digest()):
            try:
                found = pickle.loads(body)  # noqa: S301 - signed with this workspace's key
            except Exception:
                found = None
            if isinstance(found, Runbook):
                return found
    runbook = _parse(path)
    body = pickle.dumps(runbook, protocol=pickle.HIGHEST_PROTOCOL)
    tmp = entry.with_name(f".{entry.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(hmac.new(key, body, hashlib.sha256).digest() + body)
        tmp.replace(entry)
    except OSError:  # a read-only state directory: parse every time
        tmp.unlink(missing_ok=True)
    return runbook


def _parse(path: Path) -> Runbook:
    from opsbook.runbooks.parser import parse_file  # noqa: PLC0415

    return parse_file(path)
