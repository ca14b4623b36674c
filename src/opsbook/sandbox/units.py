"""A service as the supervisor runs it: its balancer, the active replica set, an optional
standby set (blue-green), the revision history, and how it reads in ``status``."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path
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
    status: str = "active"  # active, standby, staged, superseded, failed, aborted
    strategy: str = ""

    def view(self) -> dict[str, Any]:
        return {
            "revision": self.revision,
            "version": self.version,
            "replicas": self.replicas,
            "deployed_at": self.deployed_at,
            "by": self.by,
            "change_cause": self.change_cause,
            "status": self.status,
            "strategy": self.strategy,
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
    weight: int = 0  # the share (percent) of connections the standby set takes (a canary)
    rollout: dict[str, Any] | None = None  # the deployment in progress: version, by, since
    retire: asyncio.Task[None] | None = None  # the old set's scale-down after a promotion
    split_flag: Path | None = None  # present while two versions run: replicas close connections

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
        """Send traffic to the live replicas of the active set, and ``weight`` % of it to the
        standby set's (a canary) when a weight is set."""
        live = [r.port for r in self.active if r.alive]
        if self.weight > 0 and self.standby:
            self.balancer.set(live, [r.port for r in self.standby if r.alive], self.weight)
        else:
            self.balancer.set(live)
        self._flag(bool(self.standby) or self.rollout is not None)

    def _flag(self, on: bool) -> None:
        """While a second version runs, the replicas answer ``Connection: close``: the balancer
        splits connections, so clients reconnecting per request makes the split per request
        (as a mesh's L7 split is), and no client stays pinned to one version."""
        flag = self.split_flag
        if flag is None or flag.exists() == on:
            return
        if on:
            flag.parent.mkdir(parents=True, exist_ok=True)
            flag.write_text(str(time.time()), encoding="utf-8")
        else:
            flag.unlink(missing_ok=True)

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
                "weight": self.weight,
            },
            "rollout": self.rollout,
            "pods": [r.view() for r in [*self.active, *self.standby]],
            "revisions": [r.view() for r in self.revisions],
            "events": self.events[-5:],
        }
