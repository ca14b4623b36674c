"""Issue 16 §1: a real ``opsbook serve`` vouches for the records it wrote (every 100 records
or 10 s, and at shutdown), so a strict ``opsbook audit verify`` passes after it stops; the CLI
commands around it vouch for theirs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.conftest import free_port

OPSBOOK = [sys.executable, "-m", "opsbook.cli.main"]


def _ob(ws: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*OPSBOOK, *args],
        capture_output=True,
        text=True,
        env={**os.environ, "OPSBOOK_WORKSPACE": str(ws)},
        stdin=subprocess.DEVNULL,
        timeout=120,
        check=False,
    )


def test_serve_signs_its_records_at_shutdown(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    assert _ob(ws.parent, "init", str(ws)).returncode == 0
    assert _ob(ws, "users", "add", "vic", "--role", "viewer").returncode == 0
    made = _ob(ws, "tokens", "create", "--user", "vic", "--name", "t", "--scope", "read")
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip().splitlines()[-1]
    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [*OPSBOOK, "serve", "--port", str(port), "--no-schedules"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "OPSBOOK_WORKSPACE": str(ws)},
        )
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(url + "/api/v1/health").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert proc.poll() is None, log.read_text()
                assert time.monotonic() < deadline, "opsbook serve did not start"
                time.sleep(0.1)
            headers = {"Authorization": f"Bearer {token}"}
            for _ in range(3):  # each refusal is an access.denied record the server writes
                assert httpx.get(url + "/api/v1/users", headers=headers).status_code == 403
        finally:
            proc.terminate()
            assert proc.wait(timeout=30) == 0, log.read_text()
    res = _ob(ws, "audit", "verify", "--json")
    report = json.loads(res.stdout)
    assert res.returncode == 0 and report["status"] == "ok", report
    assert report["unwitnessed"] == []
    lines = [json.loads(x) for x in Path(report["witness"]).read_text().splitlines()]
    served = [x for x in lines if x["signer"] == "serve"]
    assert served, lines
    text = _ob(ws, "audit", "verify")  # the text form names the key to publish
    assert "audit key" in text.stdout
