"""Where the services find the ledger's primary on PostgreSQL: ``ledger-endpoint.json`` in the
data directory, standing for an Azure SQL failover group's listener (issue 13). A failover or
a point-in-time recovery's cut-over rewrites it; every service notices on its next query (a
``stat`` per use) and reconnects between two queries, never in the middle of one."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

FILE = "ledger-endpoint.json"


def path_of(data_dir: Path) -> Path:
    return data_dir / FILE


def read(data_dir: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path_of(data_dir).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    ok = isinstance(data, dict) and (data.get("port") or data.get("path"))
    return data if ok else None


def write(
    data_dir: Path,
    *,
    cluster: str,
    reason: str,
    port: int | None = None,
    path: Path | None = None,
    fenced: bool = False,
) -> dict[str, Any]:
    """Point the services at ``cluster``: on PostgreSQL 127.0.0.1:``port``, on SQLite the file
    ``path``. ``fenced``: the ledger refuses every query (a region being lost or switched)."""
    current = read(data_dir) or {}
    endpoint: dict[str, Any] = {
        "cluster": cluster,
        "reason": reason,
        "fenced": fenced,
        "version": int(current.get("version") or 0) + 1,
    }
    if port is not None:
        endpoint |= {"host": "127.0.0.1", "port": int(port)}
    if path is not None:
        endpoint["path"] = str(path)
    path = path_of(data_dir)
    tmp = path.with_suffix(".json.new")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump(endpoint, out)
    tmp.replace(path)
    return endpoint


class EndpointView:
    """What a service's ledger connections use: re-read when the file changes."""

    def __init__(self, data_dir: Path) -> None:
        self.path = path_of(data_dir)
        self._stamp: int | None = None
        self._endpoint: dict[str, Any] | None = None

    def current(self) -> dict[str, Any] | None:
        try:
            stamp = self.path.stat().st_mtime_ns
        except OSError:
            return None
        if stamp != self._stamp:
            self._stamp, self._endpoint = stamp, read(self.path.parent)
        return self._endpoint
