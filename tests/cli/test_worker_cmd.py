"""`opsbook worker` refusals and `opsbook workers list`, as a user calls them (real console
script, real SQLite workspace database). The worker itself runs in tests/cluster/test_worker.py."""

from __future__ import annotations

import json
from pathlib import Path

from opsbook.cluster import registry
from opsbook.db import open_database
from opsbook.engine._base import owner_token
from opsbook.engine._journal import ExecutionRow, create_execution
from opsbook.engine.states import State

from .conftest import Run

NOW = "2026-12-04T10:00:00.000000Z"


def test_a_worker_without_a_broker_is_refused_with_the_fix(ob: Run) -> None:
    res = ob("worker", "-q", "eastus", env={"OPSBOOK_BROKER_URL": ""})
    assert res.returncode == 2, res.stderr
    assert "set OPSBOOK_BROKER_URL=redis://HOST:6379/0 or amqp://USER@HOST//" in res.stderr
    assert "Traceback" not in res.stderr


def test_bad_worker_input_names_the_field(ob: Run) -> None:
    cases = [
        (["worker", "--broker-url", "kafka://h:9092"], "--broker-url"),
        (["worker", "--broker-url", "user:secret@host"], "without a scheme"),
        (["worker", "--broker-url", "redis://h:6379/0", "-q", "East US"], "--queue"),
        (["worker", "--broker-url", "redis://h:6379/0", "-q", "host.other"], "host.*"),
        (["worker", "--broker-url", "redis://h:6379/0", "-c", "0"], "concurrency"),
        (["worker"], "OPSBOOK_BROKER_URL"),
    ]
    for args, needle in cases:
        res = ob(*args, env={"OPSBOOK_BROKER_URL": ""})
        assert res.returncode == 2, (args, res.stdout, res.stderr)
        assert needle in res.stderr, (args, res.stderr)
        assert "secret" not in res.stderr
        assert "Traceback" not in res.stderr
    env = ob("worker", env={"OPSBOOK_BROKER_URL": "redis://h:6379/0", "OPSBOOK_WORKER_LEASE": "x"})
    assert env.returncode == 2 and "OPSBOOK_WORKER_LEASE" in env.stderr


def test_workers_list_shows_live_workers_and_their_runs(ob: Run, ws_root: Path) -> None:
    empty = ob("workers", "list")
    assert empty.returncode == 0, empty.stderr
    assert "no workers alive" in empty.stdout and "opsbook worker" in empty.stdout
    assert json.loads(ob("workers", "list", "--json").stdout) == {"workers": []}

    db = open_database(f"sqlite:///{ws_root / '.opsbook' / 'opsbook.db'}")
    try:
        me = registry.register(
            db=db,
            kind="worker",
            name="east-1",
            queues=["eastus", "host.h1"],
            concurrency=4,
            version="test",
            lease_seconds=60,
            worker_id=owner_token(),
        )
        gone = registry.register(
            db=db,
            kind="serve",
            name="replica-2",
            queues=[],
            concurrency=1,
            version="test",
            lease_seconds=60,
            worker_id="otherhost:4242:1",
        )
        registry.set_state(db=db, worker_id=gone.id, state="stopped")
        create_execution(
            db=db,
            execution=ExecutionRow(
                id="run1",
                parent_id=None,
                runbook_id="deploy",
                runbook_path="deploy.md",
                runbook_hash="h",
                procedure_id="roll",
                environment="sandbox",
                params={},
                digest="d",
                state=State.RUNNING,
                state_name="Running",
                reason=None,
                cursor=0,
                dry_run=False,
                started_by="alice",
                owner=me.id,
                created_at=NOW,
                updated_at=NOW,
                finished_at=None,
            ),
            actor="alice",
        )
    finally:
        db.close()

    table = ob("workers", "list")
    assert table.returncode == 0, table.stderr
    header = table.stdout.splitlines()[0].split()
    assert header == [
        "WORKER",
        "KIND",
        "HOST",
        "QUEUES",
        "SLOTS",
        "HEARTBEAT",
        "STATE",
        "RUNNING",
    ]
    line = next(x for x in table.stdout.splitlines() if x.startswith("east-1"))
    assert "eastus,host.h1" in line and "1/4" in line and "alive" in line
    assert "run1 deploy#roll" in line
    assert "replica-2" not in table.stdout  # stopped: only with --all

    everything = json.loads(ob("workers", "list", "--all", "--json").stdout)["workers"]
    assert [(w["name"], w["state"]) for w in everything] == [
        ("east-1", "alive"),
        ("replica-2", "stopped"),
    ]
    assert everything[0]["running"][0]["execution_id"] == "run1"
    assert everything[0]["heartbeat_age_s"] < 60
    assert "replica-2" in ob("workers", "list", "--all").stdout


def test_a_metrics_port_in_use_is_refused_and_the_worker_row_is_stopped(
    ob: Run, ws_root: Path
) -> None:
    import socket

    from opsbook.sandbox.config import free_port

    with socket.socket() as taken:
        taken.bind(("0.0.0.0", free_port()))  # where the worker binds: all interfaces
        taken.listen()
        port = taken.getsockname()[1]
        res = ob(
            "worker",
            "--broker-url",
            f"redis://127.0.0.1:{free_port()}/0",  # never reached: it stops before consuming
            "--metrics-port",
            str(port),
        )
    assert res.returncode == 2, res.stderr
    assert f"--metrics-port {port}" in res.stderr and "Traceback" not in res.stderr
    rows = json.loads(ob("workers", "list", "--all", "--json").stdout)["workers"]
    assert [w["state"] for w in rows] == ["stopped"]
