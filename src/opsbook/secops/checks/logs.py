"""Reading the services' JSON logs for the checks: the tail of each file (the checks look at the
last day's activity, not at years of history), parsed leniently."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

TAIL_BYTES = 32 * 2**20


def tail_bytes(path: Path, limit: int = TAIL_BYTES) -> tuple[bytes, int]:
    """(the last ``limit`` bytes of ``path`` from a line start, the 1-based line number of its
    first line when the whole file was read, else 0)."""
    try:
        with path.open("rb") as f:
            size = f.seek(0, 2)
            start = max(size - limit, 0)
            f.seek(start)
            data = f.read()
    except OSError:
        return b"", 0
    if start:
        cut = data.find(b"\n")
        return data[cut + 1 :], 0
    return data, 1


def events(path: Path, *, names: tuple[str, ...], since: str) -> Iterator[dict[str, Any]]:
    """Log events named ``names`` at or after ``since`` (ISO UTC, compared as text)."""
    data, _ = tail_bytes(path)
    wanted = tuple(f'"event": "{n}"'.encode() for n in names) + tuple(
        f'"event":"{n}"'.encode() for n in names
    )
    for raw in data.splitlines():
        if not any(w in raw for w in wanted):
            continue
        try:
            ev = json.loads(raw)
        except ValueError:
            continue
        if isinstance(ev, dict) and str(ev.get("ts", "")) >= since:
            yield ev
