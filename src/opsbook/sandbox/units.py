"""A service as the supervisor runs it: its balancer, the active replica set, an optional
standby set (blue-green), the revision history, and how it reads in ``status``."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from opsbook.sandbox.procs import Replica
from opsbook.sandbox.proxy import Balancer


@dataclass
class Revision:
    revision: int
    version: str
    bug: bool
    replicas: int
    deployed_at: float
    by: str
    change_cause: str
    status: str = "active"  # active, standby, staged, superseded, failed

    def view(self) -> dict[str, Any]:
        return {
            "revision": self.revision,
            "version": self.version,
            "replicas": self.replicas,
            "deployed_at": self.deployed_at,
            "by": self.by,
            "change_cause": self.change_cause,
            "status": self.status,
        }


@dataclass
class Unit:
    name: str
    port: int
    desired: int
    balancer: Balancer
    active: list[Replica] = field(default_factory=list)
    standby: list[Replica] = field(default_factory=list)
    revisions: list[Revision] = field(default_factory=list)
    restarts: int = 0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    events: list[dict[str, Any]] = field(default_factory=list)

    def revision(self, number: int) -> Revision | None:
        return next((r for r in self.revisions if r.revision == number), None)

    @property
    def current(self) -> Revision:
        return next(r for r in reversed(self.revisions) if r.status == "active")

    @property
    def standby_revision(self) -> Revision | None:
        return next(
            (r for r in reversed(self.revisions) if r.status in ("standby", "staged")), None
        )

    def route(self) -> None:
        """Send traffic to the live replicas of the active set."""
        self.balancer.set([r.port for r in self.active if r.alive])

    def event(self, kind: str, message: str) -> None:
        self.events.append({"ts": time.time(), "type": kind, "message": message})
        del self.events[:-20]

    @property
    def state(self) -> str:
        alive = [r for r in self.active if r.alive]
        if self.desired == 0:
            return "stopped"
        if len(alive) >= self.desired:
            return "running"
        if alive:
            return "degraded"
        if any(r.state == "crashed" for r in self.active):
            return "crashed"
        return "stopped"

    def view(self) -> dict[str, Any]:
        alive = [r for r in self.active if r.alive]
        current = self.current
        standby = self.standby_revision
        return {
            "name": self.name,
            "state": self.state,
            "replicas": self.desired,
            "ready": sum(1 for r in alive if r.ready),
            "available": len(alive),
            "version": current.version,
            "revision": current.revision,
            "restarts": self.restarts,
            "uptime": round(time.time() - min(r.started_at for r in alive), 1) if alive else 0,
            "cpu": round(sum(r.cpu for r in alive), 1),
            "memory": round(sum(r.rss for r in alive) / 2**20, 1),
            "port": self.port,
            "url": f"http://127.0.0.1:{self.port}",
            "standby": None
            if standby is None
            else {
                "revision": standby.revision,
                "version": standby.version,
                "status": standby.status,
                "replicas": sum(1 for r in self.standby if r.alive),
            },
            "pods": [r.view() for r in [*self.active, *self.standby]],
            "revisions": [r.view() for r in self.revisions],
            "events": self.events[-5:],
        }
