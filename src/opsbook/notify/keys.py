"""The workspace's signing key (acknowledgement links; webhooks unless an env var is set)."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

KEY_FILE = "incident-signing.key"


def workspace_key(state_dir: Path) -> bytes:
    """Read ``.opsbook/incident-signing.key``, creating it (0600) on first use."""
    path = state_dir / KEY_FILE
    try:
        return path.read_bytes().strip()
    except FileNotFoundError:
        pass
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    value = secrets.token_hex(32).encode()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process won the race: use its key
        return path.read_bytes().strip()
    with os.fdopen(fd, "wb") as f:
        f.write(value)
    return value


def webhook_key(*, env_var: str, state_dir: Path) -> bytes:
    value = os.environ.get(env_var, "")
    return value.encode() if value else workspace_key(state_dir)
