"""Reading the sandbox's logs: the last lines of a file without reading all of it."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def tail_lines(path: Path, count: int) -> list[str]:
    """The last ``count`` lines of ``path`` (empty when it does not exist)."""
    if count <= 0:
        return []
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            block, data = 65536, b""
            while size > 0 and data.count(b"\n") <= count:
                step = min(block, size)
                size -= step
                f.seek(size)
                data = f.read(step) + data
    except FileNotFoundError:
        return []
    lines = data.decode("utf-8", errors="replace").splitlines()
    return lines[-count:]


def parse(line: str) -> dict[str, Any]:
    """A log line as a mapping (``{"message": line}`` for a line that is not JSON)."""
    try:
        value = json.loads(line)
    except ValueError:
        return {"message": line}
    return value if isinstance(value, dict) else {"message": line}
