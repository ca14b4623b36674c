"""A page that cannot be delivered says why, everywhere (issue 18 §2): `incidents declare`
prints the reason and exits 1, `incidents show` has it on the timeline, and `opsbook doctor`
tries every configured channel (a real SMTP server, a closed port)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import free_port
from tests.incidents.harness import make_ws, smtp_server

OPSBOOK = [sys.executable, "-m", "opsbook.cli.main"]


def ob(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*OPSBOOK, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "OPSBOOK_WORKSPACE": str(root), "OPSBOOK_USER": "alice"},
    )


def test_declare_prints_why_a_page_failed_and_exits_1(tmp_path: Path) -> None:
    closed = free_port()
    ws = make_ws(tmp_path / "ws", smtp_port=closed, webhook=f"http://127.0.0.1:{closed}")
    out = ob(
        ws.root, "incidents", "declare", "Payments failing", "-s", "payment", "--severity", "SEV2"
    )
    assert out.returncode == 1, out.stderr
    assert "INC-1 " in out.stdout  # declared all the same
    line = next(x for x in out.stdout.splitlines() if x.strip().startswith("page l1:"))
    assert "failed" in line and f"127.0.0.1:{closed}" in line and "refused" in line.lower()
    assert "not delivered" in out.stderr and "opsbook doctor" in out.stderr
    assert "Traceback" not in out.stderr

    shown = ob(ws.root, "incidents", "show", "INC-1")
    assert shown.returncode == 0, shown.stderr
    failed = [x for x in shown.stdout.splitlines() if "Page to l1 failed" in x]
    assert failed and "refused" in failed[0].lower()

    data = json.loads(
        ob(
            ws.root,
            "incidents",
            "declare",
            "Again",
            "-s",
            "payment",
            "--severity",
            "SEV2",
            "--json",
        ).stdout
    )
    assert any(p["outcome"] == "failed" and "refused" in p["error"].lower() for p in data["pages"])


def test_doctor_tries_each_notification_channel(tmp_path: Path) -> None:
    closed = free_port()
    with smtp_server() as smtp:
        ws = make_ws(tmp_path / "ws", smtp_port=smtp.port, webhook=f"http://127.0.0.1:{closed}")
        out = ob(ws.root, "doctor", "--json")
        checks = {c["name"]: c for c in json.loads(out.stdout)["checks"]}
        assert checks["notify smtp"]["status"] == "ok", checks["notify smtp"]
        assert f"127.0.0.1:{smtp.port}" in checks["notify smtp"]["detail"]
        hook = checks[f"notify webhook 127.0.0.1:{closed}"]
        assert hook["status"] == "failed" and "refused" in hook["detail"].lower()
        assert "contacts.yaml" in hook["hint"]
        assert out.returncode == 1
    # the SMTP server is gone: the same port now refuses
    out = ob(ws.root, "doctor")
    assert out.returncode == 1
    assert f"smtp 127.0.0.1:{smtp.port}" in out.stdout and "refused" in out.stdout.lower()


def test_an_internal_update_that_reaches_nobody_says_why(tmp_path: Path) -> None:
    closed = free_port()
    ws = make_ws(tmp_path / "ws", smtp_port=closed, webhook=f"http://127.0.0.1:{closed}")
    ob(ws.root, "incidents", "declare", "Payments failing", "-s", "payment", "--severity", "SEV2")
    out = ob(ws.root, "incidents", "update", "INC-1", "--internal", "Rolling back")
    assert out.returncode == 1, out.stderr
    line = next(x for x in out.stdout.splitlines() if "update to l1" in x)
    assert "failed" in line and "refused" in line.lower()
    assert "not delivered" in out.stderr
