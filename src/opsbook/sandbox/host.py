"""What the operations (:mod:`.ops`, :mod:`.chaos_ops`) use of the supervisor that runs them.

A :class:`typing.Protocol`, so the supervisor imports the operations and the operations import
only this: no import circle between them.
"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Protocol

from opsbook.sandbox.config import SandboxConfig
from opsbook.sandbox.faults import ActiveFault
from opsbook.sandbox.jsonlog import JsonLog
from opsbook.sandbox.procs import Replica
from opsbook.sandbox.units import Revision, Unit


class Host(Protocol):
    """The running supervisor, as the operations see it."""

    config: SandboxConfig
    data_dir: Path
    logs: Path
    log: JsonLog
    phase: str
    started_at: float
    units: dict[str, Unit]
    network: Replica | None
    network_sock: socket.socket | None
    control_port: int
    faults: list[ActiveFault]
    attacker: asyncio.Task[None] | None
    leaker: asyncio.Task[None] | None
    chaos_lock: asyncio.Lock
    stopping: asyncio.Event

    def all_replicas(self) -> list[Replica]: ...

    def save(self) -> None: ...

    def log_tail(self, name: str, lines: int = 8) -> str: ...

    async def start_replicas(self, unit: Unit, rev: Revision, count: int) -> list[Replica]: ...

    async def restart_network(self) -> None: ...

    async def start_network(
        self, *, cert: Path | None = None, key: Path | None = None
    ) -> Replica: ...

    async def stop_all(self, replicas: list[Replica]) -> None: ...
