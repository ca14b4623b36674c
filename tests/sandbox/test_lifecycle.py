"""Starting and stopping the sandbox for real: healthy after `up`, no duplicate, nothing left
after `down` (checked by pid), stale records, taken ports, a service that never gets healthy."""

from __future__ import annotations

import os
import signal
import socket
from pathlib import Path

import psutil
import pytest
import yaml

from opsbook.errors import ConflictError, OpsbookError, UsageError
from opsbook.sandbox import lifecycle
from opsbook.sandbox.config import SERVICES
from opsbook.sandbox.state import read_state
from tests.sandbox.harness import (
    HEADER,
    Sandbox,
    gone,
    http,
    make_workspace,
    running_sandbox,
    sandbox_env,
    wait_for,
)


def test_up_brings_every_service_up_healthy(sb: Sandbox) -> None:
    st = sb.status()
    assert st["phase"] == "ready"
    assert [s["name"] for s in st["services"]] == list(SERVICES)
    for svc in st["services"]:
        assert svc["state"] == "running" and svc["version"] == "1.4.2"
        code, body = http(f"{svc['url']}/health")
        assert code == 200 and body["status"] == "UP" and body["service"] == svc["name"]
        code, text = http(f"{svc['url']}/metrics")
        assert code == 200 and "http_requests_total" in text
        code, version = http(f"{svc['url']}/version")
        assert version["service"] == svc["name"] and version["revision"] == 2
    code, body = http(f"{st['gateway']}/api/payment/health")
    assert code == 200 and body["service"] == "payment"
    assert http(f"{st['gateway']}/nowhere")[0] == 404


def test_a_second_up_is_refused_or_reused_never_duplicated(sb: Sandbox) -> None:
    before = sb.pids()
    with pytest.raises(ConflictError, match="already up") as info:
        lifecycle.up(workspace=sb.ws)
    assert info.value.exit_code == 2
    again = lifecycle.up(workspace=sb.ws, reuse=True)
    assert again.already_up and again.status["phase"] == "ready"
    assert sb.pids() == before


def test_the_record_survives_opsbook_restarts(sb: Sandbox) -> None:
    """Every command finds the supervisor from the state file alone, in a new process."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "opsbook.cli.sandbox", "status", "--json"],
        capture_output=True,
        text=True,
        env={**os.environ, "OPSBOOK_WORKSPACE": str(sb.ws.root)},
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert '"phase": "ready"' in done.stdout


def test_down_leaves_no_process_behind_and_keeps_the_ledger(workspace_root: Path) -> None:
    ws = make_workspace(workspace_root)
    result = lifecycle.up(workspace=ws)
    state = read_state(result.config.data_path)
    assert state is not None
    sup = psutil.Process(state["supervisor"]["pid"])
    children = sup.children(recursive=True)
    assert len(children) == 5  # four services and the payment network
    pids = [{"pid": p.pid, "create_time": p.create_time()} for p in [sup, *children]]
    port = result.config.service("account").port
    code, body = http(
        f"http://127.0.0.1:{port}/accounts",
        method="POST",
        body={"owner": "kept", "initial_cents": 100},
    )
    assert code == 201
    done = lifecycle.down(workspace=ws)
    assert done.was_running and not done.stale and done.elapsed < 10
    assert gone(pids) == []
    assert read_state(result.config.data_path) is None
    assert lifecycle.down(workspace=ws).was_running is False  # idempotent
    with running_sandbox(workspace_root) as sb:  # up again: the ledger was kept
        code, body = http(f"{sb.url('account')}/accounts/{body['id']}")
        assert code == 200 and body["owner"] == "kept" and body["balance_cents"] == 100


def test_a_dead_supervisor_record_is_reported_and_cleaned(workspace_root: Path) -> None:
    ws = make_workspace(workspace_root)
    result = lifecycle.up(workspace=ws)
    state = read_state(result.config.data_path)
    assert state is not None
    sup = {"pid": state["supervisor"]["pid"], "create_time": state["supervisor"]["create_time"]}
    os.kill(sup["pid"], signal.SIGKILL)
    wait_for(lambda: not gone([sup]), timeout=10)
    with pytest.raises(ConflictError, match="not running") as info:
        lifecycle.status(workspace=ws)
    assert "opsbook sandbox down" in (info.value.hint or "")
    wait_for(
        lambda: (
            not gone(
                [{"pid": p["pid"], "create_time": p["create_time"]} for p in state["processes"]]
            )
        ),
        timeout=10,
    )  # replicas follow
    done = lifecycle.down(workspace=ws)
    assert done.stale and read_state(result.config.data_path) is None


def test_a_taken_port_is_replaced_and_written_back(workspace_root: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        env = sandbox_env(ports={"payment": taken})
        env["monitoring"]["grafana"] = "http://grafana.local"
        ws = make_workspace(workspace_root, env)
        with pytest.raises(UsageError, match=f"port {taken} for payment is in use") as info:
            lifecycle.up(workspace=ws, strict_ports=True)
        assert info.value.exit_code == 2
        result = lifecycle.up(workspace=ws)
        try:
            assert [(c.what, c.old, c.reason) for c in result.port_changes] == [
                ("payment", taken, "in use")
            ]
            text = (ws.environments_dir / "sandbox.yaml").read_text()
            assert text.startswith(HEADER)
            data = yaml.safe_load(text)
            payment = next(s for s in data["services"] if s["name"] == "payment")
            new = result.port_changes[0].new
            assert payment["port"] == new and payment["health_url"].endswith(f":{new}/health")
            assert data["monitoring"]["grafana"] == "http://grafana.local"  # other keys kept
            assert http(payment["health_url"])[0] == 200
        finally:
            lifecycle.down(workspace=ws)


def test_a_service_that_never_gets_healthy_fails_up_with_its_logs(
    workspace_root: Path,
) -> None:
    # Long enough for the services to start and log their failing health checks on a loaded
    # 2-core machine; they never become healthy (no disk quota left).
    ws = make_workspace(workspace_root, sandbox_env(startup_timeout=8, disk_quota_mb=0))
    with pytest.raises(OpsbookError, match="did not become healthy within 8s") as info:
        lifecycle.up(workspace=ws)
    assert "health check failed" in info.value.message  # its last log lines
    assert info.value.exit_code == 1
    data_dir = workspace_root / ".opsbook" / "sandbox"
    assert read_state(data_dir) is None
    mine = [
        p
        for p in psutil.process_iter(["cmdline"])
        if str(data_dir) in " ".join(p.info["cmdline"] or [])
    ]
    assert mine == []


def test_commands_on_a_sandbox_that_is_not_up(workspace_root: Path) -> None:
    ws = make_workspace(workspace_root)
    with pytest.raises(ConflictError, match="not up") as info:
        lifecycle.status(workspace=ws)
    assert "opsbook sandbox up" in (info.value.hint or "")
    with pytest.raises(ConflictError, match="not up"):
        lifecycle.control(workspace=ws)
    assert lifecycle.down(workspace=ws).was_running is False


@pytest.mark.postgres
def test_the_ledger_can_live_in_postgresql(workspace_root: Path, pg_ledger_url: str) -> None:
    from opsbook.sandbox.ledger import Ledger

    with running_sandbox(workspace_root, sandbox_env(database_url=pg_ledger_url)) as sb:
        assert sb.status()["database"].startswith("postgresql://")
        code, body = http(
            f"{sb.url('transaction')}/transfers",
            method="POST",
            body={"from_account": 3, "to_account": 4, "amount_cents": 250},
        )
        assert code == 201, body
        code, check = http(f"{sb.url('transaction')}/ledger/check")
        assert code == 200 and check["ok"] and check["entries"] == 2 * 6 + 2
    ledger = Ledger(pg_ledger_url)
    assert ledger.account(4)["balance_cents"] == 1_000_00 + 250 and ledger.check().ok
    ledger.close()


def test_a_sandbox_whose_data_directory_is_deleted_stops_itself(workspace_root: Path) -> None:
    """`rm -rf` of a workspace without `sandbox down` must not leave a sandbox running forever."""
    import shutil

    ws = make_workspace(workspace_root, sandbox_env())
    lifecycle.up(workspace=ws)
    data_dir = workspace_root / ".opsbook" / "sandbox"
    mine = [
        p
        for p in psutil.process_iter(["cmdline"])
        if str(data_dir) in " ".join(p.info["cmdline"] or [])
    ]
    assert mine
    shutil.rmtree(data_dir)
    _, alive = psutil.wait_procs(mine, timeout=30)
    assert not alive, [p.pid for p in alive]
