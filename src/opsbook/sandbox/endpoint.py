"""Where the services find the ledger's primary on PostgreSQL: ``ledger-endpoint.json`` in the
data directory, standing for an Azure SQL failover group's listener (issue 13). A failover or
a point-in-time recovery's cut-over rewrites it; every service notices on its next query (a
``stat`` per use) and reconnects between two queries, never in the middle of one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from opsbook.sandbox.watched import WatchedFile, write_json

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
    write_json(path_of(data_dir), endpoint)
    return endpoint


class EndpointView(WatchedFile):
    """What a service's ledger connections use: re-read when the file changes."""

    def __init__(self, data_dir: Path) -> None:
        super().__init__(path_of(data_dir), read)
