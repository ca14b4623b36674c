"""Small JSON files the supervisor writes and every service process re-reads when they change
(the ledger's credential, its endpoint): an atomic write, and a view that costs one ``stat``
per use and parses only after a change."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any


def write_json(path: Path, data: dict[str, Any], *, mode: int = 0o644) -> None:
    """Replace ``path`` with ``data`` atomically (a reader sees the old file or the new one)."""
    tmp = path.with_suffix(".json.new")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump(data, out)
    tmp.replace(path)


class WatchedFile:
    """The parsed content of ``path`` (``read(data_dir)``), re-read when its mtime changes."""

    def __init__(self, path: Path, read: Callable[[Path], dict[str, Any] | None]) -> None:
        self.path = path
        self._read = read
        self._stamp: int | None = None
        self._data: dict[str, Any] | None = None

    def current(self) -> dict[str, Any] | None:
        try:
            stamp = self.path.stat().st_mtime_ns
        except OSError:
            return None
        if stamp != self._stamp:
            self._stamp, self._data = stamp, self._read(self.path.parent)
        return self._data
