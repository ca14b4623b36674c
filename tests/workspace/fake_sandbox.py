"""A stand-in for the banking sandbox, for running the template runbooks' steps for real.

Real HTTP servers on free 127.0.0.1 ports answer ``/health`` and ``/metrics`` for the four
services (and stand in for the payment network), and a real SQLite ledger (the sandbox's schema)
sits at the path sandbox.yaml names. The workspace's ``environments/sandbox.yaml`` is rewritten
to point at those ports, keeping every other key. Which services are down is shared with the
fake ``platform.*`` actions through the state file of :mod:`tests.workspace.fake_platform`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.actions.fakes import FakeServer, Received, Reply
from tests.workspace.fake_platform import load_state, save_state

SERVICES = ("account", "transaction", "payment", "notification")
LEDGER = ".opsbook/sandbox/ledger.db"
METRICS = (
    "# HELP requests_total Requests served.\n# TYPE requests_total counter\nrequests_total 7\n"
)

SCHEMA = """
CREATE TABLE accounts (id INTEGER PRIMARY KEY, owner TEXT NOT NULL, currency TEXT NOT NULL,
                       balance_cents INTEGER NOT NULL, created_at TEXT NOT NULL);
CREATE TABLE transfers (id INTEGER PRIMARY KEY, from_account INTEGER, to_account INTEGER,
                        amount_cents INTEGER NOT NULL, status TEXT NOT NULL,
                        created_at TEXT NOT NULL);
CREATE TABLE entries (id INTEGER PRIMARY KEY, transfer_id INTEGER, account_id INTEGER,
                      amount_cents INTEGER NOT NULL, created_at TEXT NOT NULL);
CREATE TABLE payments (id INTEGER PRIMARY KEY, account_id INTEGER, amount_cents INTEGER,
                       payee TEXT, status TEXT, created_at TEXT NOT NULL);
CREATE TABLE outbox (id INTEGER PRIMARY KEY, account_id INTEGER, channel TEXT, message TEXT,
                     status TEXT, created_at TEXT NOT NULL);
"""


def create_ledger(path: Path, *, balanced: bool = True) -> None:
    """The sandbox ledger schema with two accounts and transfers (entries summing to zero)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    now = "2026-11-26T07:00:00Z"
    with sqlite3.connect(path) as db:
        db.executescript(SCHEMA)
        db.executemany(
            "INSERT INTO accounts VALUES (?, ?, ?, ?, ?)",
            # balances equal the sum of each account's entries (a backup's invariant)
            [(1, "alice", "USD", -10_000, now), (2, "bob", "USD", 10_000, now)],
        )
        db.executemany(
            "INSERT INTO transfers VALUES (?, ?, ?, ?, ?, ?)",
            [(1, 1, 2, 10_000, "completed", now), (2, 2, 1, 500, "pending", now)],
        )
        db.executemany(
            "INSERT INTO entries VALUES (?, ?, ?, ?, ?)",
            [(1, 1, 1, -10_000, now), (2, 1, 2, 10_000, now)],
        )
        if not balanced:
            db.execute("INSERT INTO entries VALUES (3, 2, 1, 500, ?)", (now,))
    db.close()


@dataclass
class FakeSandbox:
    root: Path
    servers: dict[str, FakeServer] = field(default_factory=dict)

    @property
    def ledger(self) -> Path:
        return self.root / LEDGER

    def set_down(self, *names: str) -> None:
        """Make these services fail their health checks (until restarted or scaled up)."""
        state = load_state(self.root)
        state["down"] = sorted(set(state["down"]) | set(names))
        save_state(self.root, state)

    def _health(self, name: str) -> Any:
        def reply(_: Received) -> Reply:
            if name in load_state(self.root)["down"]:
                return Reply(503, {"status": "DOWN", "service": name})
            return Reply(200, {"status": "UP", "service": name})

        return reply


@contextmanager
def fake_sandbox(root: Path, *, balanced: bool = True) -> Iterator[FakeSandbox]:
    """Start the fake services and ledger for the workspace at ``root``."""
    sandbox = FakeSandbox(root)
    env_path = root / "environments" / "sandbox.yaml"
    env = yaml.safe_load(env_path.read_text(encoding="utf-8"))
    with ExitStack() as stack:
        for name in SERVICES:
            routes = {
                "/health": sandbox._health(name),
                "/metrics": lambda _r: Reply(200, METRICS, {"Content-Type": "text/plain"}),
            }
            sandbox.servers[name] = stack.enter_context(FakeServer(routes))
        network = stack.enter_context(FakeServer({}))
        env["sandbox"]["payment_network_port"] = int(network.url.rsplit(":", 1)[1])
        for svc in env["services"]:
            url = sandbox.servers[svc["name"]].url
            svc["port"] = int(url.rsplit(":", 1)[1])
            svc["health_url"] = f"{url}/health"
            svc["metrics_url"] = f"{url}/metrics"
        env_path.write_text(yaml.safe_dump(env, sort_keys=False), encoding="utf-8")
        create_ledger(sandbox.ledger, balanced=balanced)
        save_state(root, load_state(root))
        yield sandbox
