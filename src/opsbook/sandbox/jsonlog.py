"""Structured logs of the sandbox processes: one JSON object per line, appended with O_APPEND
so the lines of several processes writing one file never interleave."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any


def timestamp(at: float | None = None) -> str:
    stamp = time.time() if at is None else at
    millis = int(stamp % 1 * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(stamp)) + f".{millis:03d}Z"


class JsonLog:
    """``log("warning", "event name", key=value, ...)`` appends one line to ``path``."""

    def __init__(self, path: Path, **base: Any) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._base = base

    def __call__(self, level: str, event: str, **fields: Any) -> None:
        body = {"ts": timestamp(), "level": level, **self._base, "event": event, **fields}
        os.write(self._fd, (json.dumps(body, default=str) + "\n").encode("utf-8"))

    def close(self) -> None:
        os.close(self._fd)
