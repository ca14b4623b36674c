"""`opsbook diagnose` on the real sandbox (issue 12): a healthy sandbox gives nothing above low;
each injected fault is named with its service, its evidence and its fixing procedure; the
ranking does not read the sandbox's record of injected faults (the honesty rule); a source that
does not answer is said so while the rest comes back; a bundle verifies, a tampered one does
not; the CLI's JSON and exit codes; the runbook action in a `decide`."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from opsbook.config import Settings
from opsbook.db import open_database
from opsbook.engine.states import State
from opsbook.errors import UsageError
from opsbook.executions.local import make_engine
from opsbook.runbooks.parser import parse_file
from opsbook.troubleshoot import store
from opsbook.troubleshoot.bundle import verify_bundle
from opsbook.troubleshoot.diagnose import diagnose_async
from opsbook.workspace import Workspace, load_environment
from tests.sandbox.harness import Sandbox, wait_for

pytestmark = pytest.mark.slow


def run(sb: Sandbox, service: str | None = "payment", **kw: Any) -> dict[str, Any]:
    d = asyncio.run(
        diagnose_async(
            workspace=kw.pop("ws", sb.ws),
            environment="sandbox",
            service=service,
            write_bundle=kw.pop("bundle", False),
            save=False,
            actor="pytest",
            **kw,
        )
    )
    return d.to_dict()


def inject(sb: Sandbox, fault: str, service: str | None = None) -> None:
    sb.control().call("inject", {"fault": fault, "service": service, "actor": "pytest"})


def test_a_healthy_sandbox_has_nothing_above_low(sb: Sandbox) -> None:
    d = run(sb)
    assert d["top"] is None
    assert all(h["confidence"] == "low" for h in d["hypotheses"])
    assert d["id"].startswith("dg-") and len(d["id"]) == 15
    assert set(d["sources"]) == {
        "platform",
        "health",
        "signals",
        "logs",
        "changes",
        "database",
        "payment_network",
    }
    assert all(s["ok"] for s in d["sources"].values()), d["sources"]
    assert d["facts"]["database"]["balanced"] is True
    assert d["facts"]["payment_network"]["tls_days_left"] > 300


@pytest.mark.parametrize(
    ("fault", "service", "procedure"),
    [
        ("crash", "payment", "troubleshooting#restart-service"),
        ("latency", None, "troubleshooting#slow-service"),
        ("disk-full", None, "troubleshooting#disk-space"),
        ("db-connections-exhausted", None, "troubleshooting#connection-pool"),
        ("cert-expiring", None, "troubleshooting#certificate-renewal"),
    ],
)
def test_an_injected_fault_is_named_with_its_fix(
    sb: Sandbox, fault: str, service: str | None, procedure: str
) -> None:
    if fault == "latency":  # slow requests are seen in the requests made
        for _ in range(8):
            subprocess.run(
                ["curl", "-s", "-o", "/dev/null", sb.url("payment") + "/accounts/1"],
                check=False,
                timeout=10,
            )
    inject(sb, fault, service)
    if fault == "crash":
        wait_for(lambda: sb.service("payment")["ready"] == 0, timeout=15)
    else:
        time.sleep(2.5)
    if fault == "latency":
        for _ in range(6):
            subprocess.run(
                ["curl", "-s", "-o", "/dev/null", sb.url("payment") + "/accounts/1"],
                check=False,
                timeout=10,
            )
    d = run(sb)
    top = d["top"]
    assert top is not None, d["hypotheses"]
    assert top["cause"] == fault, [(h["cause"], h["service"], h["score"]) for h in d["hypotheses"]]
    assert top["procedure"] == procedure
    assert top["confidence"] in ("high", "medium")
    assert top["evidence"] and all(e["text"] for e in top["evidence"])
    if fault == "crash":
        assert top["service"] == "payment" and top["params"] == {"service": "payment"}
        assert any("exit code 70" in e["text"] for e in top["evidence"])
        # the crashed service's own sources say so; the rest comes back
        assert "error" in d["facts"]["signals"]["payment"]
        assert d["facts"]["signals"]["account"].get("error") is None


def test_the_ranking_does_not_read_the_fault_record(sb: Sandbox) -> None:
    """The honesty rule: hide faults.json and chaos.jsonl, the ranking is the same."""
    inject(sb, "crash", "payment")
    wait_for(lambda: sb.service("payment")["ready"] == 0, timeout=15)
    seen = run(sb)
    hidden = []
    for name in ("faults.json", "chaos.jsonl"):
        path = sb.data_dir / name
        if path.exists():
            path.rename(path.with_suffix(".hidden"))
            hidden.append(path)
    try:
        blind = run(sb)
    finally:
        for path in hidden:
            path.with_suffix(".hidden").rename(path)
    assert [(h["cause"], h["service"]) for h in blind["hypotheses"]] == [
        (h["cause"], h["service"]) for h in seen["hypotheses"]
    ]
    assert blind["top"]["cause"] == "crash"
    faults_shown = [c for c in seen["facts"]["changes"] if c["kind"] == "sandbox-fault"]
    assert faults_shown and not any(c["used_for_ranking"] for c in faults_shown)


def test_a_source_that_fails_is_named_and_the_rest_comes_back(sb: Sandbox, tmp_path: Path) -> None:
    root = tmp_path / "ws"
    (root / "runbooks").mkdir(parents=True)
    (root / "environments").mkdir()
    (root / "opsbook.toml").write_text("[workspace]\nname = 't'\n", encoding="utf-8")
    env = sb.environment()
    env["sandbox"] = {
        **(env.get("sandbox") or {}),
        "data_dir": str(sb.data_dir),
        "database_url": f"sqlite:///{tmp_path / 'missing' / 'ledger.db'}",
    }
    (root / "environments" / "sandbox.yaml").write_text(yaml.safe_dump(env), encoding="utf-8")
    d = run(sb, ws=Workspace.load(root))
    assert d["sources"]["database"]["ok"] is False
    assert "unable to open database file" in d["sources"]["database"]["error"]
    assert d["facts"]["database"] is None
    assert all(d["sources"][s]["ok"] for s in ("platform", "health", "signals", "logs"))


def test_unknown_names_get_the_closest(sb: Sandbox) -> None:
    with pytest.raises(UsageError) as err:
        run(sb, service="paymnt")
    assert "did you mean payment" in (err.value.hint or "")


def test_bundle_stored_verified_and_tampering_found(sb: Sandbox, tmp_path: Path) -> None:
    db = open_database(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        d = asyncio.run(
            diagnose_async(
                workspace=sb.ws,
                environment="sandbox",
                service="payment",
                db=db,
                bundle_dir=tmp_path / "bundles",
                actor="pytest",
            )
        ).to_dict()
        stored = store.get(db, d["id"])
        assert stored["id"] == d["id"] and stored["created_by"] == "pytest"
        assert store.list_recent(db, limit=5)[0]["id"] == d["id"]
        audit = db.query("SELECT subject FROM events WHERE action = 'troubleshoot.diagnosed'")
        assert audit == [{"subject": f"diagnosis:{d['id']}"}]
    finally:
        db.close()
    path = Path(d["bundle"])
    ok = verify_bundle(path)
    assert ok["ok"] and ok["diagnosis"] == d["id"] and ok["files"] >= 8
    with tarfile.open(path) as tar:
        names = tar.getnames()
        assert "MANIFEST.json" in names and "facts/health.json" in names
        members = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}  # type: ignore[union-attr]
    members["facts/health.json"] = members["facts/health.json"].replace(b"UP", b"UQ")
    tampered = tmp_path / "tampered.tar"
    with tarfile.open(tampered, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            import io

            tar.addfile(info, io.BytesIO(data))
    bad = verify_bundle(tampered)
    assert not bad["ok"] and bad["problems"] == [
        "facts/health.json: SHA-256 does not match the manifest"
    ]
    cli = subprocess.run(
        [sys.executable, "-m", "opsbook.cli.main", "diagnose", "--verify", str(tampered)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=sb.ws.root,
        env={**os.environ, "OPSBOOK_WORKSPACE": str(sb.ws.root)},
    )
    assert cli.returncode == 1 and "DOES NOT MATCH" in cli.stdout


def test_diagnose_from_the_command_line(sb: Sandbox) -> None:
    def ob(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "opsbook.cli.main", "diagnose", *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            cwd=sb.ws.root,
            env={**os.environ, "OPSBOOK_WORKSPACE": str(sb.ws.root)},
        )

    inject(sb, "crash", "payment")
    wait_for(lambda: sb.service("payment")["ready"] == 0, timeout=15)
    human = ob("payment", "--no-bundle")
    assert human.returncode == 0, human.stderr
    first = human.stdout.splitlines()[0]
    assert first.startswith("HIGH: crash on payment")
    assert "fix: opsbook run troubleshooting#restart-service -p service=payment" in human.stdout
    data = json.loads(ob("payment", "--json", "--no-bundle").stdout)
    assert data["top"]["cause"] == "crash" and data["bundle"] is None
    assert {"id", "environment", "target", "hypotheses", "sources", "facts", "took_ms"} <= set(data)
    bad = ob("paymnt")
    assert bad.returncode == 2 and "did you mean payment" in bad.stderr
    assert "Traceback" not in bad.stderr
    unknown = ob("--incident", "INC-99")
    assert unknown.returncode == 2 and "no incident" in unknown.stderr


DECIDE = """\
---
id: diag
title: Diagnose and branch
owner: operations
---

# Diagnose and branch

## Find the cause

```yaml procedure
permissions: [operator]
```

### Diagnose the payment service

```action {name=diagnose}
troubleshoot.diagnose: {service: payment, bundle: false}
```

```expect
result != null
```

### Branch on the cause

```decide
- if: >-
    steps.diagnose.result.result.top != null
    && steps.diagnose.result.result.top.cause == "crash"
  goto: crashed
- else: nothing-wrong
```

### Crashed

```sh {name=crashed}
echo "restart it"
```

### Nothing wrong

```sh {name=nothing-wrong}
echo "all good"
```
"""


async def test_the_action_feeds_a_decide(sb: Sandbox, tmp_path: Path) -> None:
    (sb.ws.runbooks_dir / "diag.md").write_text(DECIDE, encoding="utf-8")
    db = open_database(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        inject(sb, "crash", "payment")
        wait_for(lambda: sb.service("payment")["ready"] == 0, timeout=15)
        rb = parse_file(sb.ws.runbooks_dir / "diag.md")
        out = await make_engine(sb.ws, Settings.from_env(), db).start(
            runbook=rb,
            procedure=rb.procedures[0],
            environment=load_environment(sb.ws, "sandbox"),
            params={},
            started_by="pytest",
        )
        assert out.state is State.SUCCEEDED
        row = db.one(
            "SELECT result FROM step_runs WHERE execution_id = ? AND step_id = ?",
            (out.execution_id, "branch-on-the-cause"),
        )
        assert row is not None
        assert json.loads(row["result"])["goto"] == "crashed"
        diag = db.one(
            "SELECT result FROM step_runs WHERE execution_id = ? AND step_id = 'diagnose'",
            (out.execution_id,),
        )
        assert diag is not None
        stored = json.loads(diag["result"])
        result = stored["fields"]["result"]  # what steps.diagnose.result.result reads
        assert result["top"]["procedure"] == "troubleshooting#restart-service"
        assert "facts" not in result  # the raw facts go to the bundle, not the journal
    finally:
        (sb.ws.runbooks_dir / "diag.md").unlink()
        db.close()
