"""`opsbook sandbox ...` as a user runs it: `python -m opsbook.cli.sandbox` in a subprocess,
and mounted in the main CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.sandbox.harness import Sandbox, make_workspace


def ob(ws: Path, *args: str, main: bool = False) -> subprocess.CompletedProcess[str]:
    module = ["opsbook.cli.main", "sandbox"] if main else ["opsbook.cli.sandbox"]
    return subprocess.run(
        [sys.executable, "-m", *module, *args],
        capture_output=True,
        text=True,
        env={**os.environ, "OPSBOOK_WORKSPACE": str(ws), "OPSBOOK_USER": "erin"},
        timeout=60,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def test_status_text_and_json(sb: Sandbox) -> None:
    done = ob(sb.ws.root, "status")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0].split()[:3] == ["NAME", "READY", "STATUS"]
    assert "payment" in done.stdout and "running" in done.stdout
    data = json.loads(ob(sb.ws.root, "status", "--json").stdout)
    assert {s["name"] for s in data["services"]} == {
        "account",
        "transaction",
        "payment",
        "notification",
    }


def test_chaos_inject_list_clear_and_audit(sb: Sandbox) -> None:
    done = ob(sb.ws.root, "chaos", "inject", "latency", "--service", "payment", "--duration", "5m")
    assert done.returncode == 0, done.stderr
    assert "injected latency on payment for 5m" in done.stdout
    listed = json.loads(ob(sb.ws.root, "chaos", "list", "--json").stdout)["faults"]
    assert [(f["fault"], f["by"]) for f in listed] == [("latency", "erin")]
    cleared = ob(sb.ws.root, "chaos", "clear", "--json", main=True)
    assert cleared.returncode == 0, cleared.stderr
    assert [f["fault"] for f in json.loads(cleared.stdout)["cleared"]] == ["latency"]
    verify = subprocess.run(
        [
            sys.executable,
            "-m",
            "opsbook.cli.main",
            "--workspace",
            str(sb.ws.root),
            "audit",
            "export",
            "--out",
            str(sb.ws.root / "evidence"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert verify.returncode == 0, verify.stderr
    events = [
        json.loads(line)
        for line in (sb.ws.root / "evidence" / "events.jsonl").read_text().splitlines()
    ]
    assert [(e["actor"], e["action"]) for e in events if e["action"].startswith("sandbox.")][
        -2:
    ] == [("erin", "sandbox.fault.injected"), ("erin", "sandbox.fault.cleared")]


def test_bad_input_exits_2_with_a_fix(sb: Sandbox) -> None:
    done = ob(sb.ws.root, "chaos", "inject", "meteor")
    assert done.returncode == 2 and "unknown fault 'meteor'" in done.stderr
    assert "fix:" in done.stderr and "Traceback" not in done.stderr
    done = ob(sb.ws.root, "chaos", "inject", "crash", "--service", "ledger")
    assert done.returncode == 2 and "unknown service 'ledger'" in done.stderr
    done = ob(sb.ws.root, "logs", "ledger")
    assert done.returncode == 2
    done = ob(sb.ws.root, "up")
    assert done.returncode == 2 and "already up" in done.stderr


def test_logs_and_catalogue(sb: Sandbox) -> None:
    done = ob(sb.ws.root, "logs", "payment", "--lines", "3", "--json")
    assert done.returncode == 0, done.stderr
    lines = json.loads(done.stdout)["lines"]
    assert 0 < len(lines) <= 3 and all(line["service"] == "payment" for line in lines)
    catalogue = ob(sb.ws.root, "chaos", "list", "--all")
    assert catalogue.returncode == 0 and "suspicious-logins" in catalogue.stdout


def test_load_reports_the_ledger(sb: Sandbox) -> None:
    done = ob(sb.ws.root, "load", "--rate", "40", "--duration", "1s", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["sent"] == 40 and report["invariant"]["ok"] and report["errors"] == 0


def test_status_and_down_when_not_up(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "ws").root
    done = ob(ws, "status")
    assert done.returncode == 2 and "the sandbox is not up" in done.stderr
    done = ob(ws, "down")
    assert done.returncode == 0 and "nothing to stop" in done.stdout
    done = ob(ws, "chaos", "list")
    assert done.returncode == 2
